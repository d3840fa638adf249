#!/usr/bin/env bash
# The product scaled out on one machine, against the Temporal cluster of ./temporal-cluster.sh and
# one database: N copies of the worker, the API and the event relay and reactor (`npm run events`),
# and one auditor, each a process of its own, configured only by environment.
#
#   npm run cluster -- [--workers 3] [--apis 2] [--reactors 2] [--auditors 1]
#
# Before the processes: the cluster is started (./temporal-cluster.sh start: a no-op when it is up),
# the database migrated, the workflow bundle built and the audit Schedule and cron workflow created
# (each once, whatever the copies). With --reactors 0 every worker runs its own relay and reactor
# (EVENTS_IN_WORKER); with more, the workers leave them to the events processes.
#
# Ports, copy i counted from 0: API API_PORT+i (8080), worker metrics CLUSTER_METRICS_PORT+i and
# SDK metrics CLUSTER_METRICS_PORT+20+i, events metrics CLUSTER_METRICS_PORT+40+i, auditor
# CLUSTER_METRICS_PORT+60+i (CLUSTER_METRICS_PORT 9500). Logs in TEMPORAL_CLUSTER_DIR
# (./.temporal-cluster), one per process. Like `npm start`, they stand or fall together: when one
# exits, the others are stopped; Ctrl-C or SIGTERM stops all of them and exits 0. The Temporal
# cluster keeps running (./temporal-cluster.sh stop stops it).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'cluster: %s\n' "$*" >&2; }
usage() { say "usage: npm run cluster -- [--workers N] [--apis N] [--reactors N] [--auditors N]"; exit 2; }

workers=3 apis=2 reactors=2 auditors=1
while [ $# -gt 0 ]; do
  case "$1" in
  --workers | --apis | --reactors | --auditors)
    [[ "${2:-}" =~ ^[0-9]+$ ]] || { say "$1 needs a whole number"; usage; }
    declare "${1#--}=$2"
    shift 2
    ;;
  *) usage ;;
  esac
done
[ "$workers" -ge 1 ] && [ "$apis" -ge 1 ] || { say "at least one worker and one API"; exit 2; }

log_dir=${TEMPORAL_CLUSTER_DIR:-$PWD/.temporal-cluster}
metrics_base=${CLUSTER_METRICS_PORT:-9500}
api_base=${API_PORT:-8080}
grace=${STOP_GRACE_SECONDS:-15}

./temporal-cluster.sh start
export TEMPORAL_ADDRESS
TEMPORAL_ADDRESS=$(./temporal-cluster.sh address)
export WORKFLOW_BUNDLE_PATH=${WORKFLOW_BUNDLE_PATH:-$PWD/dist/workflow-bundle.js}
node scripts/preflight.mjs deps || exit 1
npm run --silent db:migrate
npm run --silent build:workflow -- "$WORKFLOW_BUNDLE_PATH"
npm run --silent audit:schedules
mkdir -p "$log_dir"

declare -A names=() # pid -> name
run() {
  local name=$1 entry=$2
  shift 2
  local launcher=()
  command -v setsid >/dev/null 2>&1 && launcher=(setsid)
  env "$@" "${launcher[@]}" node --import tsx "$entry" >>"$log_dir/$name.log" 2>&1 &
  names[$!]=$name
  say "$name: pid $!, log $log_dir/$name.log"
}

any_running() {
  local pid
  for pid in "${!names[@]}"; do kill -0 "$pid" 2>/dev/null && return 0; done
  return 1
}
all_running() {
  local pid
  for pid in "${!names[@]}"; do kill -0 "$pid" 2>/dev/null || return 1; done
}
stop_all() {
  local pid deadline=$((SECONDS + grace))
  for pid in "${!names[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  while any_running; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      for pid in "${!names[@]}"; do kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"; done
      break
    fi
    sleep 0.2
  done
  for pid in "${!names[@]}"; do wait "$pid" 2>/dev/null || true; done
}
on_signal() {
  trap '' INT TERM HUP
  trap - EXIT
  say "got SIG$1; stopping ${#names[@]} processes"
  stop_all
  exit 0
}
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM
trap 'on_signal HUP' HUP
trap stop_all EXIT

events_in_worker=true
[ "$reactors" -gt 0 ] && events_in_worker=false
for ((i = 0; i < workers; i++)); do
  run "worker-$i" worker/main.ts WORKER_METRICS_PORT=$((metrics_base + i)) WORKER_SDK_METRICS_PORT=$((metrics_base + 20 + i)) \
    EVENTS_IN_WORKER=$events_in_worker
done
for ((i = 0; i < reactors; i++)); do
  run "events-$i" events/main.ts EVENTS_METRICS_PORT=$((metrics_base + 40 + i))
done
for ((i = 0; i < auditors; i++)); do
  run "auditor-$i" auditor/main.ts AUDITOR_METRICS_PORT=$((metrics_base + 60 + i))
done
for ((i = 0; i < apis; i++)); do
  run "api-$i" api/main.ts API_PORT=$((api_base + i))
done

cat <<MSG >&2

  Temporal   $TEMPORAL_ADDRESS (./temporal-cluster.sh status; eval "\$(./temporal-cluster.sh env)" for temporal and tctl)
  APIs       $(for ((i = 0; i < apis; i++)); do printf 'http://127.0.0.1:%s ' $((api_base + i)); done)
  Workers    $workers (metrics :$metrics_base..), relays and reactors: $([ "$reactors" -gt 0 ] && echo "$reactors events processes" || echo "one in each worker")
  Logs       $log_dir
  Ctrl-C stops them all; the Temporal cluster keeps running.

MSG

while all_running; do sleep 0.5; done
status=0
for pid in "${!names[@]}"; do
  kill -0 "$pid" 2>/dev/null && continue
  wait "$pid" || status=$?
  say "${names[$pid]} (pid $pid) exited with status $status; stopping the rest"
  break
done
trap - EXIT
stop_all
exit $((status == 0 ? 1 : status))
