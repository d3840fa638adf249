#!/usr/bin/env bash
# One command for the whole local system: dependencies, Temporal dev server (with the Web UI and
# search attributes), database migrations, the prebuilt workflow bundle, the audit Schedule and cron
# workflow, then three processes in the foreground: the worker (runs, on TEMPORAL_TASK_QUEUE), the
# auditor (the audit loop, on TEMPORAL_AUDIT_TASK_QUEUE) and the API.
#
# The three stand or fall together: when any one exits or is killed, the others are stopped and the
# script exits non-zero (an API whose runs no worker runs is not healthy, and neither is a system
# nobody audits). The auditor is a process of its own so that it does not share the worker's fate
# where processes are supervised one by one (a deployment); on one machine, a dead process of the
# three stops the whole and says which. SIGINT (Ctrl-C) or SIGTERM, to npm or to this script, stops
# all three and exits 0 (package.json runs this with `exec`, so the signal npm forwards reaches this
# script and not a `sh -c` that would die without passing it on). The Temporal dev server is a
# daemon that outlives this script on purpose: `./temporal-dev.sh stop` stops it.
#
# UP_SKIP_SETUP=1 skips everything before the three processes (npm ci, Temporal, migrations, bundle,
# schedules), for a caller that prepared them and set TEMPORAL_ADDRESS, DATABASE_URL and
# WORKFLOW_BUNDLE_PATH (test/process-hygiene.test.ts). STOP_GRACE_SECONDS (15) is how long each
# process may take to stop before it is killed.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'up: %s\n' "$*" >&2; }

if [ "${UP_SKIP_SETUP:-}" != 1 ]; then
  [ -d node_modules ] || npm ci --no-audit --no-fund
  ./temporal-dev.sh start
  npm run --silent db:migrate
  npm run --silent build:workflow
  # The reconciler's Schedule and the stale-run report's cron workflow, created or updated once per
  # namespace on the auditor's queue (moved there from the runs' queue if an older version put them there).
  npm run --silent audit:schedules
fi
export WORKFLOW_BUNDLE_PATH=${WORKFLOW_BUNDLE_PATH:-$PWD/dist/workflow-bundle.js}
grace=${STOP_GRACE_SECONDS:-15}

declare -A names=() # pid -> worker | auditor | api

# `node --import tsx`, not `npx tsx`: tsx runs the program in a second node process, which a
# SIGKILL of tsx leaves orphaned on its ports. Here the pid we hold is the program itself.
run() {
  node --import tsx "$2" &
  names[$!]=$1
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
  trap '' INT TERM
  trap - EXIT
  say "got SIG$1; stopping the worker, the auditor and the API"
  stop_all
  exit 0
}
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM
# Whatever else ends the script (a failed command under `set -e`) leaves nothing running either.
trap 'stop_all' EXIT

run worker worker/main.ts
run auditor auditor/main.ts
run api api/main.ts

all_running() {
  local pid
  for pid in "${!names[@]}"; do kill -0 "$pid" 2>/dev/null || return 1; done
}

api="http://${API_HOST:-127.0.0.1}:${API_PORT:-8080}"
for _ in $(seq 60); do
  all_running || break
  if curl -fsS --max-time 2 "$api/healthz" >/dev/null 2>&1; then
    cat <<MSG >&2

  API        $api   (health: $api/healthz, metrics: $api/metrics)
  Web UI     http://${TEMPORAL_IP:-127.0.0.1}:${TEMPORAL_UI_PORT:-8233}   (filter: RunPhase = "EXECUTING")
  Worker     metrics on :${WORKER_METRICS_PORT:-9464}/metrics, SDK metrics on :${WORKER_SDK_METRICS_PORT:-9465}/metrics
  Auditor    task queue ${TEMPORAL_AUDIT_TASK_QUEUE:-governed-audit}, metrics on :${AUDITOR_METRICS_PORT:-9467}/metrics

  Create a tenant and key:  npm run --silent tenant:create -- --name acme --json
  Audit:     temporal schedule list (audit-reconciler), npm run --silent report:stale
  Ctrl-C stops the worker, the auditor and the API; ./temporal-dev.sh stop stops Temporal.

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
trap - EXIT
stop_all
exit $((status == 0 ? 1 : status))
