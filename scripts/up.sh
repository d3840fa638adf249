#!/usr/bin/env bash
# One command for the whole local system: dependencies, Temporal dev server (with the Web UI and
# search attributes), database migrations, the prebuilt workflow bundle, then the worker and the API
# in the foreground. Ctrl-C stops the worker and the API; `./temporal-dev.sh stop` stops Temporal.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -d node_modules ] || npm ci --no-audit --no-fund
./temporal-dev.sh start
npm run --silent db:migrate
npm run --silent build:workflow
# The reconciler's Schedule and the stale-run report's cron workflow, created or updated once per namespace.
npm run --silent audit:schedules
export WORKFLOW_BUNDLE_PATH=${WORKFLOW_BUNDLE_PATH:-$PWD/dist/workflow-bundle.js}

pids=()
stop() {
  trap - INT TERM EXIT
  [ ${#pids[@]} -gt 0 ] && kill -TERM "${pids[@]}" 2>/dev/null || true
  wait || true
}
trap stop INT TERM EXIT

npx --no-install tsx worker/main.ts &
pids+=($!)
npx --no-install tsx api/main.ts &
pids+=($!)

api="http://${API_HOST:-127.0.0.1}:${API_PORT:-8080}"
for _ in $(seq 60); do
  curl -fsS "$api/healthz" >/dev/null 2>&1 && break
  sleep 1
done
cat <<MSG

  API        $api   (health: $api/healthz, metrics: $api/metrics)
  Web UI     http://${TEMPORAL_IP:-127.0.0.1}:${TEMPORAL_UI_PORT:-8233}   (filter: RunPhase = "EXECUTING")
  Worker     metrics on :${WORKER_METRICS_PORT:-9464}/metrics, SDK metrics on :${WORKER_SDK_METRICS_PORT:-9465}/metrics

  Create a tenant and key:  npm run --silent tenant:create -- --name acme --json
  Audit:     temporal schedule list (audit-reconciler), npm run --silent report:stale
  Ctrl-C stops the worker and the API.

MSG
wait -n "${pids[@]}"
