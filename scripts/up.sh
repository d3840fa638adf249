#!/usr/bin/env bash
# One command for the whole local system: dependencies, Temporal dev server (with the Web UI and
# search attributes), database migrations, the prebuilt workflow bundle, the audit Schedule and cron
# workflow, then three processes in the foreground: the worker (runs, on TEMPORAL_TASK_QUEUE), the
# auditor (the audit loop, on TEMPORAL_AUDIT_TASK_QUEUE) and the API.
#
# Before it touches anything it refuses to start a second system beside a running one (the pid file
# up-<API_PORT>.pid in TEMPORAL_DATA_DIR names the running script; an API of this system answering
# /healthz on API_PORT is one too), then probes DATABASE_URL and REDIS_URL (scripts/preflight.mjs):
# without Postgres it stops there, naming the variable and the address; without Redis it says what
# still works and goes on.
#
# The three stand or fall together: when any one exits or is killed, the others are stopped and the
# script exits non-zero (an API whose runs no worker runs is not healthy, and neither is a system
# nobody audits). The auditor is a process of its own so that it does not share the worker's fate
# where processes are supervised one by one (a deployment); on one machine, a dead process of the
# three stops the whole and says which. SIGINT (Ctrl-C) or SIGTERM, to npm or to this script, stops
# all three and exits 0 (package.json runs this with `exec`, so the signal npm forwards reaches this
# script and not a `sh -c` that would die without passing it on). The Temporal dev server is a
# daemon that outlives this script on purpose, in a session of its own so that the terminal's
# Ctrl-C does not reach it (temporal-dev.sh): `./temporal-dev.sh stop` stops it.
#
# UP_SKIP_SETUP=1 skips everything before the three processes (npm ci, Temporal, migrations, bundle,
# schedules), for a caller that prepared them and set TEMPORAL_ADDRESS, DATABASE_URL and
# WORKFLOW_BUNDLE_PATH (test/process-hygiene.test.ts); the checks above still run. Without it the
# bundle is built at WORKFLOW_BUNDLE_PATH (default dist/workflow-bundle.js), and TEMPORAL_ADDRESS,
# when not set, is the dev server's (TEMPORAL_IP:TEMPORAL_PORT). STOP_GRACE_SECONDS (15) is how long
# each process may take to stop before it is killed.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'up: %s\n' "$*" >&2; }

case "${API_HOST:-127.0.0.1}" in
0.0.0.0 | :: | '') api="http://127.0.0.1:${API_PORT:-8080}" ;;
*:*) api="http://[${API_HOST}]:${API_PORT:-8080}" ;;
*) api="http://${API_HOST:-127.0.0.1}:${API_PORT:-8080}" ;;
esac

# One system per API port and data directory: this script's pid, claimed before anything is touched
# and removed when it ends (one left by a script that was SIGKILLed names no live up.sh and is
# taken over).
data_dir=${TEMPORAL_DATA_DIR:-$PWD/.temporal}
pid_file=$data_dir/up-${API_PORT:-8080}.pid

# Whether the pid is a live up.sh (not a pid reused by something else since).
is_up_script() {
  local cmd
  kill -0 "$1" 2>/dev/null || return 1
  if [ -r "/proc/$1/cmdline" ]; then
    cmd=$(tr '\0' ' ' <"/proc/$1/cmdline")
  else
    cmd=$(ps -o args= -p "$1" 2>/dev/null) || return 1
  fi
  case "$cmd" in *up.sh*) return 0 ;; *) return 1 ;; esac
}

refuse_running() {
  say "this system is already running: npm start has pid $1 (pid file $pid_file), its API at $api."
  cat >&2 <<MSG
    A second one would rebuild the workflow bundle under the running worker and start a second worker,
    auditor and API on the same database. Use the one that runs, or stop it first: Ctrl-C in its
    terminal, or kill $1 (SIGTERM); either stops its worker, auditor and API and exits 0, and the
    Temporal dev server keeps running (./temporal-dev.sh stop stops it).
MSG
  exit 1
}

claim_pid_file() {
  local other
  mkdir -p "$data_dir"
  for _ in 1 2 3; do
    if (set -C && echo $$ >"$pid_file") 2>/dev/null; then return 0; fi
    other=$(cat "$pid_file" 2>/dev/null || true)
    if [[ "$other" =~ ^[0-9]+$ ]] && [ "$other" != $$ ] && is_up_script "$other"; then refuse_running "$other"; fi
    rm -f "$pid_file"
  done
  say "could not write $pid_file"
  exit 1
}

release_pid_file() {
  if [ "$(cat "$pid_file" 2>/dev/null)" = $$ ]; then rm -f "$pid_file"; fi
  return 0
}

claim_pid_file
# Whatever ends the script from here (a failed step, a signal during setup) gives the pid file back.
trap release_pid_file EXIT

# A system started from elsewhere (another checkout or data directory, `npm run api` by hand)
# answers on the API port all the same; then Postgres and Redis, where the variables point.
node scripts/preflight.mjs running || exit 1
node scripts/preflight.mjs deps || exit 1

export WORKFLOW_BUNDLE_PATH=${WORKFLOW_BUNDLE_PATH:-$PWD/dist/workflow-bundle.js}
if [ "${UP_SKIP_SETUP:-}" != 1 ]; then
  [ -d node_modules ] || npm ci --no-audit --no-fund
  # The compiled `governed` CLI (npm ci's prepare builds it too); a build older than its sources is redone.
  node scripts/build-cli.mjs --if-stale --soft
  # The worker compiled likewise (dist/worker/): it then runs without tsx's loader, ~30-45 MB less.
  node scripts/build-cli.mjs --worker --if-stale --soft
  ./temporal-dev.sh start
  export TEMPORAL_ADDRESS=${TEMPORAL_ADDRESS:-${TEMPORAL_IP:-127.0.0.1}:${TEMPORAL_PORT:-7233}}
  npm run --silent db:migrate
  npm run --silent build:workflow -- "$WORKFLOW_BUNDLE_PATH"
  # The reconciler's Schedule and the stale-run report's cron workflow, created or updated once per
  # namespace on the auditor's queue (moved there from the runs' queue if an older version put them there).
  npm run --silent audit:schedules
fi
grace=${STOP_GRACE_SECONDS:-15}

declare -A names=() # pid -> worker | auditor | api

# `node --import tsx`, not `npx tsx`: tsx runs the program in a second node process, which a
# SIGKILL of tsx leaves orphaned on its ports. Here the pid we hold is the program itself. The
# worker runs compiled when its build is fresh (bin/compiled-cli.js), under tsx otherwise.
#
# Each in a session of its own (a process group of its own where there is no setsid), so that a
# terminal's Ctrl-C, which signals its whole foreground process group, reaches this script alone
# and each process is stopped once, by the SIGTERM below: the Temporal SDK drains a worker on the
# first signal and stops listening, so a second one (the terminal's SIGINT, then ours) killed the
# worker and the auditor in the middle of draining. setsid execs in place (a job of this script is
# no process group leader), so $! is the program.
run() {
  local name=$1
  shift
  if command -v setsid >/dev/null 2>&1; then
    setsid node "$@" &
  else
    set -m
    node "$@" &
    set +m
  fi
  names[$!]=$name
}

# SIGTERM to each process still running, SIGKILL to any still up after the grace period; reaps all.
stop_all() {
  local pid deadline=$((SECONDS + grace))
  for pid in "${!names[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  while any_running; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      for pid in "${!names[@]}"; do
        kill -0 "$pid" 2>/dev/null && say "the ${names[$pid]} (pid $pid) did not stop in ${grace}s; killing it" && kill -KILL "$pid"
      done
      break
    fi
    sleep 0.2
  done
  for pid in "${!names[@]}"; do wait "$pid" 2>/dev/null || true; done
}

any_running() {
  local pid
  for pid in "${!names[@]}"; do kill -0 "$pid" 2>/dev/null && return 0; done
  return 1
}

on_signal() {
  trap '' INT TERM HUP
  trap release_pid_file EXIT
  say "got SIG$1; stopping the worker, the auditor and the API"
  stop_all
  exit 0
}
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM
# A closed terminal hangs up on this script, and no longer on the three in their own sessions.
trap 'on_signal HUP' HUP
# Whatever else ends the script (a failed command under `set -e`) leaves nothing running either.
trap 'stop_all; release_pid_file' EXIT

# shellcheck disable=SC2046 # the arguments, relative, split on purpose
run worker $(node bin/compiled-cli.js worker)
run auditor --import tsx auditor/main.ts
run api --import tsx api/main.ts

all_running() {
  local pid
  for pid in "${!names[@]}"; do kill -0 "$pid" 2>/dev/null || return 1; done
}

# The banner once the API answers /healthz: at once when all is well; when it says something is down
# (Redis, say), after ten seconds of that, with what is down and the variable that points at it.
operator_env=$(./temporal-dev.sh env 2>/dev/null | grep -v '^#' || true)
operator_env=${operator_env//$'\n'/; }
degraded=0
for _ in $(seq 60); do
  all_running || break
  rc=0
  health=$(node scripts/preflight.mjs health 2>/dev/null) || rc=$?
  if [ "$rc" -eq 2 ]; then degraded=$((degraded + 1)); fi
  if [ "$rc" -eq 0 ] || [ "$degraded" -ge 10 ]; then
    cat <<MSG >&2

  API        $api   (health: $api/healthz, metrics: $api/metrics)
  Web UI     http://${TEMPORAL_IP:-127.0.0.1}:${TEMPORAL_UI_PORT:-8233}   (filter: RunPhase = "EXECUTING")
  Worker     metrics on :${WORKER_METRICS_PORT:-9464}/metrics, SDK metrics on :${WORKER_SDK_METRICS_PORT:-9465}/metrics
  Auditor    task queue ${TEMPORAL_AUDIT_TASK_QUEUE:-governed-audit}, metrics on :${AUDITOR_METRICS_PORT:-9467}/metrics
${health:+$health
}
  Create a tenant and key:  npx governed tenants create --name acme
  temporal and tctl, in another terminal:  eval "\$(./temporal-dev.sh env)"${operator_env:+
             which runs: $operator_env}
  Audit:     temporal schedule list (audit-reconciler), npm run --silent report:stale
  Ctrl-C stops the worker, the auditor and the API; the Temporal dev server keeps running
  (./temporal-dev.sh stop stops it).

MSG
    break
  fi
  sleep 1
done

# Until one of them ends. Polled, not `wait -n`: a process that ended while the banner was being
# printed is no longer a job to `wait -n`, which would then wait on the others for good. A signal
# is handled by on_signal once the current sleep is over.
while all_running; do sleep 0.5; done
status=0
for pid in "${!names[@]}"; do
  kill -0 "$pid" 2>/dev/null && continue
  wait "$pid" || status=$?
  say "the ${names[$pid]} (pid $pid) exited with status $status; stopping the rest"
  break
done
trap release_pid_file EXIT
stop_all
exit $((status == 0 ? 1 : status))
