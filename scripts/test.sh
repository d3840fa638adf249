#!/usr/bin/env bash
# The test command: lint (with the workflow determinism rules), type-check, then every test
# against the real Temporal dev server (installed by temporal-dev.sh when missing), Postgres
# and Redis, and the `cluster` project against a multi-process Temporal cluster (temporal-cluster.sh).
# Extra arguments go to vitest (a file, -t "name", or --project unit|workflow|e2e|cluster).
# With --project, only that project runs, without the lint and type-check of the whole tree:
# `npm test -- --project unit` needs neither Temporal nor Postgres and answers in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
case " $* " in
  *" --project "*|*" --project="*) whole=false ;;
  *) whole=true ;;
esac
case " $* " in
  *" --project unit "*|*" --project=unit "*) ;;
  *)
    TEMPORAL_CLI=$(bash ./temporal-dev.sh cli-path)
    export TEMPORAL_CLI
    ;;
esac
# The `cluster` project's Temporal server, built once into the cache (about 6 minutes the first
# time) before vitest starts, rather than inside the project's setup while other tests run. A
# failure here is the project's to report (test/setup/cluster.ts: fatal under CI).
case " $* " in
  *" --project cluster "*|*" --project=cluster "*) bash ./temporal-cluster.sh install || true ;;
  *) if [ "$whole" = true ]; then bash ./temporal-cluster.sh install || true; fi ;;
esac
if [ "$whole" = true ]; then
  npx --no-install eslint .
  npx --no-install tsc -p tsconfig.json --noEmit
fi
report=$(mktemp)
status=0
npx --no-install vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@" || status=$?
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`);
' "$report" 2>/dev/null || true
rm -f "$report"
exit "$status"
