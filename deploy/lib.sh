# Shared by every deploy script: where state lives, the ports, and small guards.
# Every setting can be overridden from the environment; each is checked before use.
set -euo pipefail

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT_DIR="$(cd "$DEPLOY_DIR/.." && pwd)"
STATE_DIR="${MIG_STATE_DIR:-$PROJECT_DIR/.state}"
CACHE_DIR="${MIG_CACHE_DIR:-$HOME/.cache/chat-migration}"
VENV_DIR="${MIG_VENV_DIR:-$PROJECT_DIR/.venv}"

MARIADB_PORT="${MIG_MARIADB_PORT:-3306}"
MONOLITH_PORT="${MIG_MONOLITH_PORT:-8080}"
KAFKA_PORT="${MIG_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${MIG_KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_RELAYED_PORT="${MIG_KAFKA_RELAYED_PORT:-9094}"  # the broker's listener behind a test relay
KAFKA_RELAY_PORT="${MIG_KAFKA_RELAY_PORT:-9095}"      # where that listener is advertised
ZOOKEEPER_PORT="${MIG_ZOOKEEPER_PORT:-2181}"
HBASE_THRIFT_PORT="${MIG_HBASE_THRIFT_PORT:-9090}"
# The capture pipeline's ops endpoints (GET /healthz, /metrics); the commands read the same names.
BINLOG_OPS_PORT="${MIG_BINLOG_OPS_PORT:-9313}"
CAPTURER_OPS_PORT="${MIG_CAPTURER_OPS_PORT:-9312}"
UPDATER_OPS_PORT="${MIG_UPDATER_OPS_PORT:-9311}"
# The front door (deploy/frontdoor.sh): where clients connect, and the gateway processes it sends
# rooms in inspected phases to (a comma list, one port per process; one process by default).
FRONTDOOR_PORT="${MIG_FRONTDOOR_PORT:-8000}"
FRONTDOOR_DIR="$STATE_DIR/frontdoor"
GATEWAY_PORTS="${MIG_GATEWAY_PORTS:-${MIG_GATEWAY_PORT:-8090}}"
# The new core's engine (newcore/settings.py, EngineSettings): kafka-hbase (Kafka and HBase, the
# JVMs) or embedded (files under EMBEDDED_DIR, no JVM). `make ... ENGINE=embedded` sets it.
ENGINE="${MIG_ENGINE:-kafka-hbase}"
EMBEDDED_DIR="${MIG_EMBEDDED_DIR:-$STATE_DIR/embedded}"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

check_port_setting() {  # name value
  [[ "$2" =~ ^[0-9]+$ ]] && (( $2 > 0 && $2 < 65536 )) || die "$1=$2 is not a TCP port (1..65535)"
}
for _p in MARIADB_PORT MONOLITH_PORT KAFKA_PORT KAFKA_CONTROLLER_PORT KAFKA_RELAYED_PORT KAFKA_RELAY_PORT ZOOKEEPER_PORT HBASE_THRIFT_PORT \
    BINLOG_OPS_PORT CAPTURER_OPS_PORT UPDATER_OPS_PORT FRONTDOOR_PORT; do
  check_port_setting "MIG_$_p" "${!_p}"
done
[[ "$GATEWAY_PORTS" =~ ^[0-9]+(,[0-9]+)*$ ]] || die "MIG_GATEWAY_PORTS=$GATEWAY_PORTS is not a comma list of TCP ports"
for _p in ${GATEWAY_PORTS//,/ }; do check_port_setting MIG_GATEWAY_PORTS "$_p"; done
[[ "$ENGINE" == kafka-hbase || "$ENGINE" == embedded ]] \
  || die "MIG_ENGINE=$ENGINE must be kafka-hbase (Kafka and HBase, the default) or embedded (files, no JVM)"
embedded() { [[ "$ENGINE" == embedded ]]; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Refuse to start a service on a port something else already holds: name the holder.
require_free_port() {  # port service
  if port_open "$1"; then
    local who
    who=$(ss -ltnpH "sport = :$1" 2>/dev/null | sed -n 's/.*users:((\("[^"]*"\),pid=\([0-9]*\).*/\1 pid \2/p' | head -n1)
    die "port $1 for $2 is already taken${who:+ by $who}; stop it or set another port (see deploy/README.md)"
  fi
}

pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# wait_until SECONDS LOGFILE DESCRIPTION CMD...: poll CMD once a second; on timeout show the log.
wait_until() {
  local limit=$1 logfile=$2 what=$3; shift 3
  local t=0
  until "$@" >/dev/null 2>&1; do
    if (( t >= limit )); then
      printf 'error: %s did not become ready within %ss. Last lines of %s:\n' "$what" "$limit" "$logfile" >&2
      tail -n 30 "$logfile" >&2 || true
      exit 1
    fi
    sleep 1; t=$((t + 1))
  done
}

stop_pidfile() {  # pidfile name
  local pid
  pid=$(cat "$1" 2>/dev/null) || pid=""
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -9 "$pid" 2>/dev/null || true
    log "$2 stopped"
  fi
  rm -f "$1"
}
