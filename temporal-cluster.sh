#!/usr/bin/env bash
# A real Temporal cluster on this machine, for what the dev server cannot show: the frontend,
# matching, worker and two history services as five separate processes, over Postgres (persistence
# and visibility databases set up with the server's own versioned schemas), 8 history shards shared
# between the two history processes so that shards move when one dies. Every process starts from
# our one config file, cluster/temporal/cluster.yaml, with its own ports from the environment, and
# reads cluster/temporal/dynamicconfig.yaml.
#
#   ./temporal-cluster.sh [start]      set up the databases and the namespace (once), start every
#                                      service not running, wait until the frontend is healthy
#   ./temporal-cluster.sh stop         stop every service this script started (SIGTERM, then SIGKILL)
#   ./temporal-cluster.sh status       each service's pid and ports, and the frontend's health
#   ./temporal-cluster.sh env          the shell lines that point temporal and tctl at this cluster,
#                                      for eval "$(./temporal-cluster.sh env)"; installs nothing
#   ./temporal-cluster.sh kill NAME    SIGKILL one service (frontend, matching, worker, history-1,
#                                      history-2), the way a machine dies; `start` brings it back
#   ./temporal-cluster.sh destroy      stop, then drop both databases and the logs
#   ./temporal-cluster.sh install      install the server and the SQL tool only
#   ./temporal-cluster.sh address      print the frontend's host:port
#
# Environment: TEMPORAL_CLUSTER_PORT (7400: the port block, frontend gRPC on it and each process
# ten ports of its own above it, see `ports`), TEMPORAL_CLUSTER_DB (temporal_cluster; the visibility
# database is <name>_visibility), TEMPORAL_CLUSTER_PG_HOST (127.0.0.1), TEMPORAL_CLUSTER_PG_PORT
# (5432), TEMPORAL_CLUSTER_PG_USER (postgres), TEMPORAL_CLUSTER_PG_PASSWORD (empty),
# TEMPORAL_CLUSTER_DIR (./.temporal-cluster: pid files and one log per service),
# TEMPORAL_CLUSTER_RETENTION (72h), TEMPORAL_NAMESPACE (default), GOVERNED_RUNS_CACHE
# (~/.cache/governed-runs: where the server is installed, outside the work tree).
set -euo pipefail

TEMPORAL_SERVER_VERSION=v1.29.1
SEARCH_ATTRIBUTES=(RunPhase RunStatus TenantId PauseReason)
# Started in this order, each once the one before listens: on an empty database the first start
# writes the cluster's metadata, and services starting together race on that write.
SERVICES=(history-1 history-2 matching frontend worker)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${GOVERNED_RUNS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/governed-runs}
install_dir=$cache/temporal-server-${TEMPORAL_SERVER_VERSION#v}
server_bin=$install_dir/server
sql_bin=$install_dir/sql
schema_dir=$install_dir/schema/postgresql/v12
base_port=${TEMPORAL_CLUSTER_PORT:-7400}
db=${TEMPORAL_CLUSTER_DB:-temporal_cluster}
namespace=${TEMPORAL_NAMESPACE:-default}
retention=${TEMPORAL_CLUSTER_RETENTION:-72h}
run_dir=${TEMPORAL_CLUSTER_DIR:-$here/.temporal-cluster}
export TEMPORAL_CLUSTER_DB=$db
export TEMPORAL_CLUSTER_PG_HOST=${TEMPORAL_CLUSTER_PG_HOST:-127.0.0.1}
export TEMPORAL_CLUSTER_PG_PORT=${TEMPORAL_CLUSTER_PG_PORT:-5432}
export TEMPORAL_CLUSTER_PG_USER=${TEMPORAL_CLUSTER_PG_USER:-postgres}
export TEMPORAL_CLUSTER_PG_PASSWORD=${TEMPORAL_CLUSTER_PG_PASSWORD:-}
frontend_address=127.0.0.1:$base_port

say() { printf 'temporal-cluster: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# The port block of one service: gRPC, membership, HTTP (frontend only), metrics, pprof.
service_index() {
  case "$1" in
  frontend) echo 0 ;; history-1) echo 1 ;; history-2) echo 2 ;; matching) echo 3 ;; worker) echo 4 ;;
  *) die "no service '$1' (frontend | matching | worker | history-1 | history-2)" ;;
  esac
}
grpc_port() { echo $((base_port + 10 * $(service_index "$1"))); }

install() {
  if [ -x "$server_bin" ] && [ -x "$sql_bin" ] && [ -d "$schema_dir" ]; then return; fi
  command -v go >/dev/null 2>&1 || die "no Temporal server in $install_dir and Go is not installed to build it.
  Install Go (https://go.dev/doc/install) and run this again."
  mkdir -p "$install_dir"
  # One install at a time (npm test's and a drill's first use together): the second waits, then finds it done.
  if command -v flock >/dev/null 2>&1; then
    exec {install_lock}>"$install_dir/install.lock"
    flock -n "$install_lock" || { say "another process is installing the Temporal server into $install_dir; waiting for it"; flock "$install_lock"; }
    if [ -x "$server_bin" ] && [ -x "$sql_bin" ] && [ -d "$schema_dir" ]; then exec {install_lock}>&-; return; fi
  fi
  local module started=$SECONDS
  for module in server tools/sql; do
    local name=${module##*/}
    [ -x "$install_dir/$name" ] && continue
    say "installing the Temporal $name with 'go install go.temporal.io/server/cmd/$module@$TEMPORAL_SERVER_VERSION' into $install_dir (about 6 minutes the first time)"
    if ! GOBIN=$install_dir GOFLAGS=-mod=mod go install "go.temporal.io/server/cmd/$module@$TEMPORAL_SERVER_VERSION" \
      >"$install_dir/go-install-$name.log" 2>&1; then
      say "go install of the Temporal $name failed; its output:"
      sed 's/^/  /' "$install_dir/go-install-$name.log" >&2
      exit 1
    fi
  done
  # The versioned schemas come with the module's source; kept beside the binaries so that a cleaned
  # Go module cache does not take them away.
  if [ ! -d "$schema_dir" ]; then
    local module_dir
    module_dir=$(GOFLAGS=-mod=mod go mod download -json "go.temporal.io/server@$TEMPORAL_SERVER_VERSION" |
      sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
    [ -d "$module_dir/schema/postgresql/v12" ] || die "no schema/postgresql/v12 in the Go module cache ($module_dir)"
    mkdir -p "$install_dir/schema/postgresql"
    cp -R "$module_dir/schema/postgresql/v12" "$install_dir/schema/postgresql/"
    chmod -R u+w "$install_dir/schema"
  fi
  say "Temporal server $TEMPORAL_SERVER_VERSION ready in $install_dir ($((SECONDS - started))s)"
  # Let go before the services start from this shell: they would hold it for as long as they run.
  if [ -n "${install_lock:-}" ]; then exec {install_lock}>&-; fi
}

sql_tool() {
  local database=$1
  shift
  "$sql_bin" --plugin postgres12 --endpoint "$TEMPORAL_CLUSTER_PG_HOST" --port "$TEMPORAL_CLUSTER_PG_PORT" \
    --user "$TEMPORAL_CLUSTER_PG_USER" --password "$TEMPORAL_CLUSTER_PG_PASSWORD" --database "$database" "$@"
}

# Creates the database when missing, and brings its schema to the version this server expects
# (update-schema applies only the versions not applied yet, so this is safe on every start).
setup_database() {
  local database=$1 schema=$2 out
  # Both steps leave an existing database as it is (setup-schema skips a schema already versioned).
  out=$(sql_tool "$database" create-database 2>&1) ||
    case "$out" in
    *"already exists"*) ;;
    *) die "could not create database $database on $TEMPORAL_CLUSTER_PG_HOST:$TEMPORAL_CLUSTER_PG_PORT: $out" ;;
    esac
  sql_tool "$database" setup-schema -v 0.0 >"$run_dir/schema-$database.log" 2>&1 ||
    { cat "$run_dir/schema-$database.log" >&2; die "setup-schema of $database failed"; }
  sql_tool "$database" update-schema -d "$schema_dir/$schema/versioned" >>"$run_dir/schema-$database.log" 2>&1 ||
    { tail -n 20 "$run_dir/schema-$database.log" >&2; die "update-schema of $database failed"; }
}

pid_of() {
  local pid
  pid=$(cat "$run_dir/$1.pid" 2>/dev/null) || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_service() {
  local name=$1 index service
  index=$(service_index "$name")
  service=${name%-[0-9]}
  local port=$((base_port + 10 * index))
  # A session of its own (as temporal-dev.sh does), so that a terminal's Ctrl-C does not reach it.
  local launcher=()
  command -v setsid >/dev/null 2>&1 && launcher=(setsid)
  TC_GRPC_PORT=$port TC_MEMBERSHIP_PORT=$((port + 1)) TC_HTTP_PORT=$((port + 2)) TC_METRICS_PORT=$((port + 3)) \
    TC_PPROF_PORT=$((port + 4)) TC_FRONTEND_PORT=$base_port TC_DYNAMIC_CONFIG=$here/cluster/temporal/dynamicconfig.yaml \
    "${launcher[@]}" nohup "$server_bin" --root "$here" --config cluster/temporal --env cluster --allow-no-auth \
    start --service "$service" </dev/null >>"$run_dir/$name.log" 2>&1 &
  echo $! >"$run_dir/$name.pid"
  # The worker service serves no gRPC: it is up once it listens for membership.
  local ready_port=$port
  [ "$service" = worker ] && ready_port=$((port + 1))
  local deadline=$((SECONDS + 60))
  until listening "$ready_port"; do
    if ! kill -0 "$(cat "$run_dir/$name.pid")" 2>/dev/null; then
      say "the $name service exited; the end of its log ($run_dir/$name.log):"
      tail -n 30 "$run_dir/$name.log" >&2
      exit 1
    fi
    [ "$SECONDS" -ge "$deadline" ] && die "the $name service did not listen on $ready_port in 60s; see $run_dir/$name.log"
    sleep 0.1
  done
  say "$name up (pid $(cat "$run_dir/$name.pid"), gRPC :$port, metrics :$((port + 3)))"
}

temporal_cli() { bash "$here/temporal-dev.sh" cli-path; }

healthy() { "$1" operator cluster health --address "$frontend_address" >/dev/null 2>&1; }

register_namespace() {
  local cli=$1 out name waited=0
  if ! out=$("$cli" operator namespace describe --address "$frontend_address" --namespace "$namespace" 2>&1); then
    out=$("$cli" operator namespace create --address "$frontend_address" --namespace "$namespace" --retention "$retention" 2>&1) ||
      case "$out" in *"already"*) ;; *) die "could not register namespace $namespace: $out" ;; esac
    say "registered namespace $namespace (retention $retention)"
  fi
  for name in "${SEARCH_ATTRIBUTES[@]}"; do
    # A namespace just registered reaches every frontend's cache within seconds: retried until then.
    until out=$("$cli" operator search-attribute create --address "$frontend_address" --namespace "$namespace" \
      --name "$name" --type Keyword 2>&1); do
      case "$out" in *"already exists"* | *"already registered"*) break ;; esac
      [ "$waited" -ge 60 ] && die "could not register search attribute $name: $out"
      sleep 0.5
      waited=$((waited + 1))
    done
  done
}

start() {
  install
  mkdir -p "$run_dir"
  local started=$SECONDS cli name
  cli=$(temporal_cli)
  setup_database "$db" temporal
  setup_database "${db}_visibility" visibility
  for name in "${SERVICES[@]}"; do
    if pid_of "$name" >/dev/null; then continue; fi
    start_service "$name"
  done
  local waited=0
  until healthy "$cli"; do
    [ "$waited" -ge 120 ] && die "the frontend on $frontend_address is not healthy after 60s; see $run_dir/frontend.log"
    sleep 0.5
    waited=$((waited + 1))
  done
  register_namespace "$cli"
  say "running on $frontend_address (namespace $namespace, ${TEMPORAL_CLUSTER_SHARDS:-8} history shards), logs in $run_dir, up in $((SECONDS - started))s"
}

stop() {
  local name pid pids=() i
  for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
    name=${SERVICES[$i]}
    if pid=$(pid_of "$name"); then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
    rm -f "$run_dir/$name.pid"
  done
  [ ${#pids[@]} -eq 0 ] && { say "not running"; return; }
  local waited=0
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null; do
      if [ "$waited" -ge 150 ]; then kill -KILL "$pid" 2>/dev/null || true; break; fi
      sleep 0.1
      waited=$((waited + 1))
    done
  done
  say "stopped ${#pids[@]} service(s)"
}

status() {
  local name pid port up=0
  for name in "${SERVICES[@]}"; do
    port=$(grpc_port "$name")
    if pid=$(pid_of "$name"); then
      say "$name: pid $pid, gRPC :$port, metrics :$((port + 3))"
      up=$((up + 1))
    else
      say "$name: down"
    fi
  done
  if healthy "$(temporal_cli)"; then
    say "frontend $frontend_address healthy; $up of ${#SERVICES[@]} services up"
    [ "$up" -eq ${#SERVICES[@]} ]
  else
    say "frontend $frontend_address not answering"
    return 1
  fi
}

kill_service() {
  local name=${1:?kill needs a service name} pid
  service_index "$name" >/dev/null
  pid=$(pid_of "$name") || die "$name is not running"
  kill -KILL "$pid"
  rm -f "$run_dir/$name.pid"
  say "killed $name (pid $pid)"
}

destroy() {
  stop
  if [ -x "$sql_bin" ]; then
    local database
    for database in "$db" "${db}_visibility"; do
      sql_tool "$database" drop-database --force >/dev/null 2>&1 || true
    done
  fi
  rm -rf "$run_dir"
  say "dropped databases $db and ${db}_visibility"
}

case "${1:-start}" in
start) start ;;
stop) stop ;;
status) status ;;
install) install ;;
kill) kill_service "${2:-}" ;;
destroy) destroy ;;
address) echo "$frontend_address" ;;
env) TEMPORAL_ADDRESS=$frontend_address TEMPORAL_NAMESPACE=$namespace bash "$here/temporal-dev.sh" env ;;
*) die "unknown command '$1' (start | stop | status | env | kill NAME | destroy | install | address)" ;;
esac
