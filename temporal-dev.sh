#!/usr/bin/env bash
# Local Temporal for governed runs: finds or installs the Temporal CLI (and tctl), then runs the
# dev server with a file-backed store, the Web UI and our search attributes.
#
#   ./temporal-dev.sh [start]     start in the background (no-op when already up), wait until healthy
#   ./temporal-dev.sh stop        stop the server this script started
#   ./temporal-dev.sh status      say whether it is up
#   ./temporal-dev.sh install     install the CLIs only
#   ./temporal-dev.sh cli-path    print the temporal CLI's path (installing it if needed)
#   ./temporal-dev.sh tctl-path   print tctl's path, or fail with the reason it is missing
#   ./temporal-dev.sh env         print the shell lines that put temporal and tctl on PATH (and point
#                                 them at this server when it is not on 127.0.0.1:7233), for
#                                 eval "$(./temporal-dev.sh env)"; installs nothing
#   ./temporal-dev.sh tuning-args print the dev server's queue-throttle arguments, one a line
#
# Environment: TEMPORAL_PORT (7233), TEMPORAL_UI_PORT (8233), TEMPORAL_IP (127.0.0.1),
# TEMPORAL_NAMESPACE (default), TEMPORAL_RETENTION_DAYS (180: how long Temporal keeps a closed
# workflow's history; README, "Retention"), TEMPORAL_DATA_DIR (./.temporal), GOVERNED_RUNS_CACHE
# (~/.cache/governed-runs: where the CLIs are installed, outside the work tree).
set -euo pipefail

TEMPORAL_CLI_VERSION=v1.5.1 # later tags carry a replace directive and cannot be go-installed
# The tctl v1.18 module is not served by the Go module proxy; Temporal server 1.13's tctl is, and it
# speaks to today's servers for the operator commands we document (its binary is named `cli`).
TCTL_MODULE=go.temporal.io/server/cmd/tools/cli
TCTL_VERSION=v1.13.0
SEARCH_ATTRIBUTES=(RunPhase RunStatus TenantId PauseReason)
# The dev server has one history shard and reads its transfer and timer queues at 20 reads/s by
# default, so once the first twenty are spent every task (and every timer or retry backoff) waits
# ~40 ms. The test harness and the bench read these through `./temporal-dev.sh tuning-args`; a
# self-hosted cluster with very few history shards needs the same care.
# Fairness: a backlog is dispatched by each task's fairness key (a run's tenant, set when the run is
# started) instead of first in first out, so one tenant's burst does not starve another's runs.
DEV_SERVER_TUNING=(
  --dynamic-config-value history.transferProcessorMaxPollRPS=1000
  --dynamic-config-value history.timerProcessorMaxPollRPS=1000
  --dynamic-config-value matching.enableFairness=true
)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${GOVERNED_RUNS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/governed-runs}
bin_dir=$cache/bin
port=${TEMPORAL_PORT:-7233}
ui_port=${TEMPORAL_UI_PORT:-8233}
ip=${TEMPORAL_IP:-127.0.0.1}
namespace=${TEMPORAL_NAMESPACE:-default}
# A closed run's workflow history (its inputs and step results) must not outlive the run's records,
# which tenants keep 180 days by default; the pruner deletes the history of each run it removes.
retention_days=${TEMPORAL_RETENTION_DAYS:-180}
data_dir=${TEMPORAL_DATA_DIR:-$here/.temporal}
pid_file=$data_dir/server-$port.pid
log_file=$data_dir/server-$port.log

say() { printf 'temporal-dev: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# Takes an exclusive lock on $1, waiting for it when another process has it: two first starts at
# once (npm start beside npm test, two terminals) build a binary once, not twice side by side.
# Without flock (macOS) nothing is locked. release_install_lock lets it go (before anything
# long-lived, the dev server, is started from this shell and would inherit it).
hold_install_lock() {
  install_lock=
  command -v flock >/dev/null 2>&1 || return 0
  exec {install_lock}>"$1"
  flock -n "$install_lock" && return
  say "another process is installing into $(dirname "$1"); waiting for it"
  flock "$install_lock"
}
release_install_lock() {
  if [ -n "${install_lock:-}" ]; then exec {install_lock}>&-; fi
  install_lock=
}

# go install into the cache, unless $3 is there by the time the install lock is held; the module's
# command is renamed to $3 when it is called otherwise ($4). Prints nothing on stdout.
go_install() {
  local module=$1 name=$2 installed=$3 built=${4:-}
  command -v go >/dev/null 2>&1 || return 2
  mkdir -p "$bin_dir"
  hold_install_lock "$cache/go-install-$name.lock"
  if [ -x "$installed" ]; then release_install_lock; return; fi
  say "installing $name with 'go install $module' into $bin_dir (takes a few minutes the first time)"
  local started=$SECONDS rc=0
  if GOBIN=$bin_dir GOFLAGS=-mod=mod go install "$module" >"$cache/go-install-$name.log" 2>&1; then
    if [ -n "$built" ] && [ -x "$bin_dir/$built" ]; then mv "$bin_dir/$built" "$installed"; fi
    say "$name installed in $((SECONDS - started))s"
  else
    say "go install of $name failed; its output:"
    sed 's/^/  /' "$cache/go-install-$name.log" >&2
    rc=1
  fi
  release_install_lock
  return "$rc"
}

# The temporal CLI already here (TEMPORAL_CLI, PATH, the cache), or nothing; installs nothing.
find_temporal_cli() {
  if [ -n "${TEMPORAL_CLI:-}" ] && [ -x "$TEMPORAL_CLI" ]; then echo "$TEMPORAL_CLI"; return; fi
  if command -v temporal >/dev/null 2>&1; then command -v temporal; return; fi
  if [ -x "$bin_dir/temporal" ]; then echo "$bin_dir/temporal"; return; fi
  return 1
}

temporal_cli() {
  find_temporal_cli && return
  local rc=0
  go_install "github.com/temporalio/cli/cmd/temporal@$TEMPORAL_CLI_VERSION" temporal "$bin_dir/temporal" || rc=$?
  if [ "$rc" -eq 0 ] && [ -x "$bin_dir/temporal" ]; then echo "$bin_dir/temporal"; return; fi
  if [ "$rc" -eq 2 ]; then
    die "no Temporal CLI: 'temporal' is not on PATH, not in $bin_dir, and Go is not installed to build it.
  Install Go (https://go.dev/doc/install) and run this again, or install the CLI yourself
  (brew install temporal, or a release from github.com/temporalio/cli) and put it on PATH,
  or point TEMPORAL_CLI at the binary."
  fi
  die "no Temporal CLI: 'go install github.com/temporalio/cli/cmd/temporal@$TEMPORAL_CLI_VERSION' failed (output above).
  Check that the Go module proxy is reachable (go env GOPROXY), or install the CLI yourself and put it on PATH."
}

find_tctl() {
  if command -v tctl >/dev/null 2>&1; then command -v tctl; return; fi
  if [ -x "$bin_dir/tctl" ]; then echo "$bin_dir/tctl"; return; fi
  return 1
}

tctl_cli() {
  find_tctl && return
  local marker=$cache/tctl-unavailable-$TCTL_VERSION
  if [ -f "$marker" ]; then
    say "tctl is unavailable here (an earlier install failed; delete $marker to retry):"
    sed 's/^/  /' "$marker" >&2
    return 1
  fi
  # The module's command is named cli.
  if go_install "$TCTL_MODULE@$TCTL_VERSION" tctl "$bin_dir/tctl" cli && [ -x "$bin_dir/tctl" ]; then
    echo "$bin_dir/tctl"
    return
  fi
  cp "$cache/go-install-tctl.log" "$marker" 2>/dev/null || echo "go is not installed" >"$marker"
  say "tctl could not be installed; the 'temporal' CLI drives every operator command as well"
  return 1
}

healthy() {
  "$1" operator cluster health --address "$ip:$port" >/dev/null 2>&1
}

register_search_attributes() {
  local cli=$1 name
  for name in "${SEARCH_ATTRIBUTES[@]}"; do
    local out
    if ! out=$("$cli" operator search-attribute create --address "$ip:$port" --namespace "$namespace" \
      --name "$name" --type Keyword 2>&1); then
      case "$out" in
      *"already exists"* | *"already registered"*) ;;
      *) die "could not register search attribute $name: $out" ;;
      esac
    fi
  done
}

# The namespace's retention, applied at every start (the dev server creates the namespace with 24h).
set_retention() {
  local cli=$1 out
  case "$retention_days" in '' | *[!0-9]*) die "TEMPORAL_RETENTION_DAYS=$retention_days: give a whole number of days" ;; esac
  if ! out=$("$cli" operator namespace update --address "$ip:$port" --namespace "$namespace" --retention "$((retention_days * 24))h" 2>&1); then
    die "could not set namespace $namespace's retention to $retention_days days: $out"
  fi
}

start() {
  local cli
  cli=$(temporal_cli)
  # Its progress is said (the first build takes minutes); a failure says why once, then this.
  tctl_cli >/dev/null || say "tctl is not available; the temporal CLI does everything it does"
  if healthy "$cli"; then
    register_search_attributes "$cli"
    set_retention "$cli"
    say "already running on $ip:$port (Web UI http://$ip:$ui_port)"
    return
  fi
  mkdir -p "$data_dir"
  local args=(server start-dev --ip "$ip" --port "$port" --ui-port "$ui_port" --namespace "$namespace"
    --db-filename "$data_dir/temporal-$port.sqlite"
    --sqlite-pragma journal_mode=wal --sqlite-pragma synchronous=normal
    --log-level warn "${DEV_SERVER_TUNING[@]}")
  local name
  for name in "${SEARCH_ATTRIBUTES[@]}"; do args+=(--search-attribute "$name=Keyword"); done
  # A session of its own: the dev server outlives `npm start` on purpose, and a terminal's Ctrl-C
  # (SIGINT to its foreground process group, which this script and its background jobs belong to)
  # must not reach it. Without setsid (macOS), job control gives it a process group of its own,
  # which the terminal's signals miss just as well. Either way $! is the server itself: setsid
  # execs in place when, as here, its caller is not a process group leader.
  if command -v setsid >/dev/null 2>&1; then
    setsid nohup "$cli" "${args[@]}" </dev/null >"$log_file" 2>&1 &
  else
    set -m
    nohup "$cli" "${args[@]}" </dev/null >"$log_file" 2>&1 &
    set +m
  fi
  echo $! >"$pid_file"
  local waited=0
  until healthy "$cli"; do
    if ! kill -0 "$(cat "$pid_file")" 2>/dev/null; then
      say "the dev server exited; its log ($log_file):"
      tail -n 30 "$log_file" >&2
      exit 1
    fi
    [ "$waited" -ge 60 ] && die "the dev server did not become healthy in 60s; see $log_file"
    sleep 1
    waited=$((waited + 1))
  done
  register_search_attributes "$cli"
  set_retention "$cli"
  say "running on $ip:$port (closed workflows kept $retention_days days), Web UI http://$ip:$ui_port, data in $data_dir (pid $(cat "$pid_file"))"
}

stop() {
  if [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
    kill "$(cat "$pid_file")"
    rm -f "$pid_file"
    say "stopped"
  else
    say "not running (no live pid in $pid_file)"
  fi
}

# A value escaped for the inside of double quotes (a path may hold spaces, quotes or dollars).
escaped() { printf '%s' "$1" | sed 's/[\\"$`]/\\&/g'; }

# What `eval "$(./temporal-dev.sh env)"` runs: the directories of the CLIs found here put first on
# PATH (those already on it are left alone), and, for a server elsewhere than the CLIs' default
# 127.0.0.1:7233 (TEMPORAL_ADDRESS, else TEMPORAL_IP:TEMPORAL_PORT) or a namespace other than
# default, the variables each CLI reads for its address and namespace.
print_env() {
  local cli dirs=() dir add=''
  cli=$(find_temporal_cli) || die "no Temporal CLI here yet (not on PATH, not in $bin_dir): 'npm start' or './temporal-dev.sh install' installs it"
  dirs+=("$(dirname "$cli")")
  if dir=$(find_tctl); then dirs+=("$(dirname "$dir")"); fi
  for dir in "${dirs[@]}"; do
    case ":$PATH:" in *":$dir:"*) continue ;; esac
    case ":$add:" in *":$dir:"*) continue ;; esac
    add=${add:+$add:}$dir
  done
  if [ -n "$add" ]; then
    printf 'export PATH="%s:$PATH"\n' "$(escaped "$add")"
  else
    echo "# temporal and tctl are on PATH already"
  fi
  # TEMPORAL_ADDRESS, when set, is where the product goes; the temporal CLI reads it too, tctl not.
  local address=${TEMPORAL_ADDRESS:-$ip:$port}
  if [ "$address" != 127.0.0.1:7233 ]; then
    printf 'export TEMPORAL_ADDRESS="%s" TEMPORAL_CLI_ADDRESS="%s"\n' "$(escaped "$address")" "$(escaped "$address")"
  fi
  if [ "$namespace" != default ]; then
    printf 'export TEMPORAL_NAMESPACE="%s" TEMPORAL_CLI_NAMESPACE="%s"\n' "$(escaped "$namespace")" "$(escaped "$namespace")"
  fi
}

case "${1:-start}" in
start) start ;;
stop) stop ;;
status)
  if healthy "$(temporal_cli)"; then say "up on $ip:$port"; else say "down"; exit 1; fi
  ;;
install)
  temporal_cli >/dev/null
  tctl_cli >/dev/null || true
  ;;
cli-path) temporal_cli ;;
tctl-path) tctl_cli ;;
tuning-args) printf '%s\n' "${DEV_SERVER_TUNING[@]}" ;;
env) print_env ;;
*) die "unknown command '$1' (start | stop | status | install | cli-path | tctl-path | env | tuning-args)" ;;
esac
