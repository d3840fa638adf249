#!/usr/bin/env bash
# Sees the Temporal Web UI as a user does: a headless-Chromium screenshot of the workflow list,
# filtered by a visibility query, to check that each run's status badge and summary tell the truth.
#
#   bash scripts/web-ui-screenshot.sh ['<list query>'] [out.png]
#   e.g. bash scripts/web-ui-screenshot.sh 'WorkflowType = "runWorkflow"' /tmp/runs.png
#
# Needs the Web UI up (`npm start`, TEMPORAL_UI_PORT 8233) and Chromium (installed with apt-get
# when missing and permitted).
set -euo pipefail
query=${1:-WorkflowType = \"runWorkflow\"}
out=${2:-web-ui.png}
ui="http://${TEMPORAL_IP:-127.0.0.1}:${TEMPORAL_UI_PORT:-8233}"
namespace=${TEMPORAL_NAMESPACE:-default}

browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
  echo "installing chromium with apt-get (once)" >&2
  apt-get install -y -qq chromium >/dev/null || { echo "no Chromium and apt-get could not install it" >&2; exit 1; }
  browser=$(command -v chromium)
fi
curl -fsS -o /dev/null "$ui" || { echo "the Web UI does not answer at $ui (is 'npm start' running?)" >&2; exit 1; }

encoded=$(node -e 'process.stdout.write(encodeURIComponent(process.argv[1]))' "$query")
url="$ui/namespaces/$namespace/workflows?query=$encoded"
# The UI is a single-page app: give it virtual time to fetch and render the list.
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1600,900 \
  --virtual-time-budget=8000 --screenshot="$out" "$url" >/dev/null 2>&1
echo "$out: $url"
