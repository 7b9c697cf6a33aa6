#!/usr/bin/env bash
# Kafka 3.9 as one KRaft node (broker + controller in one JVM), assembled from Maven Central jars.
#   deploy/kafka.sh install | start | stop | status
# The jars come from deploy/jvm/kafka/pom.xml into $CACHE_DIR/jvm/kafka/<pom hash>/lib; config,
# data, pid file and log live under $STATE_DIR/kafka. See deploy/README.md ("Kafka and HBase").
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$DEPLOY_DIR/jvm-lib.sh"

POM="$DEPLOY_DIR/jvm/kafka/pom.xml"
HOME_DIR="$STATE_DIR/kafka"
DATA_DIR="$HOME_DIR/data"
LOG_DIR="$HOME_DIR/logs"
LOG="$LOG_DIR/kafka.out"
PIDFILE="$HOME_DIR/kafka.pid"
CONFIG="$HOME_DIR/server.properties"
JAVA="${JAVA:-java}"
KAFKA_HEAP_OPTS="${MIG_KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
READY_TIMEOUT="${MIG_KAFKA_READY_TIMEOUT:-90}"

LIB_PARENT="$(jvm_lib_parent kafka)"
LIB_DIR="$LIB_PARENT/lib"

install() { jvm_install kafka Kafka; }

# The broker's config, on stdout. RELAYED is a second listener for tests of a Kafka outage: it
# listens on $KAFKA_RELAYED_PORT but advertises $KAFKA_RELAY_PORT, where a test's TCP relay
# forwards to it. A client that bootstraps through the relay is told to reach the broker through
# the relay too, so cutting the relay cuts that client off, and only it.
render_config() {
  cat <<EOF
# Written by deploy/kafka.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,RELAYED://127.0.0.1:$KAFKA_RELAYED_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,RELAYED://127.0.0.1:$KAFKA_RELAY_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,RELAYED:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$DATA_DIR
num.partitions=1
default.replication.factor=1
# One node: the internal topics must not ask for more replicas than exist, or consumer groups and
# transactions hang waiting for them.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.retention.hours=168
log.segment.bytes=104857600
num.network.threads=2
num.io.threads=4
EOF
}

write_config() {
  mkdir -p "$DATA_DIR" "$LOG_DIR"
  render_config >"$CONFIG"
  cat >"$HOME_DIR/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.kafka.log.LogCleaner=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.org.apache.kafka.storage.internals.log=WARN
EOF
}

java_args() {  # fills JVM_ARGS: everything before the main class
  # shellcheck disable=SC2206
  JVM_ARGS=($KAFKA_HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent
    -Djava.awt.headless=true "-Dlog4j.configuration=file:$HOME_DIR/log4j.properties"
    -cp "$LIB_DIR/*")
}

java_cmd() {  # main class and args follow
  java_args
  "$JAVA" "${JVM_ARGS[@]}" "$@"
}

# Format the log dir once: a meta.properties there means it is already formatted.
format_storage() {
  [[ -f "$DATA_DIR/meta.properties" ]] && return 0
  local id_file="$HOME_DIR/cluster.id" id
  if [[ ! -s "$id_file" ]]; then
    java_cmd kafka.tools.StorageTool random-uuid 2>>"$LOG" | tail -n1 >"$id_file"
  fi
  id=$(cat "$id_file")
  [[ -n "$id" ]] || die "kafka StorageTool random-uuid printed nothing (see $LOG)"
  log "formatting kafka storage in $DATA_DIR (cluster id $id)"
  java_cmd kafka.tools.StorageTool format -t "$id" -c "$CONFIG" --ignore-formatted >>"$LOG" 2>&1 \
    || { tail -n 20 "$LOG" >&2; die "kafka storage format failed (see $LOG)"; }
}

probe() { "$VENV_DIR/bin/python" "$DEPLOY_DIR/probe.py" kafka "127.0.0.1:$KAFKA_PORT"; }

# Poll target for wait_until: fail the whole start at once if the JVM died.
ready_or_dead() {
  if ! pid_alive "$PIDFILE"; then
    printf 'error: kafka exited during startup. Last lines of %s:\n' "$LOG" >&3
    tail -n 30 "$LOG" >&3
    exit 1
  fi
  probe
}

wait_ready() {
  exec 3>&2
  wait_until "$READY_TIMEOUT" "$LOG" "kafka on 127.0.0.1:$KAFKA_PORT" ready_or_dead
  exec 3>&-
}

# A pid file left from before a reboot may name an unrelated process: only ours counts.
drop_foreign_pidfile() {  # pidfile main-class
  if pid_alive "$1" && ! grep -qaF "$2" "/proc/$(cat "$1")/cmdline" 2>/dev/null; then
    rm -f "$1"
  fi
}

start() {
  [[ -x "$VENV_DIR/bin/python" ]] || die "no Python venv at $VENV_DIR (its python runs the readiness probe)"
  drop_foreign_pidfile "$PIDFILE" kafka.Kafka
  if pid_alive "$PIDFILE"; then
    if probe >/dev/null 2>&1; then
      log "kafka already running (pid $(cat "$PIDFILE"), port $KAFKA_PORT)"
      if ! render_config | cmp -s - "$CONFIG"; then
        log "warning: kafka runs with an older server.properties than this script writes; restart it to apply (deploy/kafka.sh stop && deploy/kafka.sh start)"
      fi
      return 0
    fi
    log "kafka process $(cat "$PIDFILE") is up but not answering yet; waiting"
    wait_ready
    log "kafka ready (pid $(cat "$PIDFILE"), port $KAFKA_PORT)"
    return 0
  fi
  rm -f "$PIDFILE"
  require_free_port "$KAFKA_PORT" "kafka"
  require_free_port "$KAFKA_CONTROLLER_PORT" "kafka controller"
  require_free_port "$KAFKA_RELAYED_PORT" "kafka's relayed listener"
  install
  check_one_slf4j_binding "$LIB_DIR"
  write_config
  format_storage
  log "starting kafka on 127.0.0.1:$KAFKA_PORT (controller $KAFKA_CONTROLLER_PORT), log $LOG"
  printf '\n==== start %s ====\n' "$(date '+%F %T')" >>"$LOG"
  # setsid: its own session, so a Ctrl-C in the calling terminal does not take the broker down.
  java_args
  setsid "$JAVA" "${JVM_ARGS[@]}" kafka.Kafka "$CONFIG" </dev/null >>"$LOG" 2>&1 3>&- &
  echo $! >"$PIDFILE"
  wait_ready
  log "kafka ready (pid $(cat "$PIDFILE"), port $KAFKA_PORT)"
}

stop() {
  if pid_alive "$PIDFILE"; then
    log "stopping kafka (pid $(cat "$PIDFILE"))"
  else
    log "kafka is not running"
  fi
  stop_pidfile "$PIDFILE" kafka
}

status() {
  if pid_alive "$PIDFILE" && port_open "$KAFKA_PORT"; then
    echo "kafka     up    pid $(cat "$PIDFILE")  127.0.0.1:$KAFKA_PORT  log $LOG"
  elif pid_alive "$PIDFILE"; then
    echo "kafka     starting  pid $(cat "$PIDFILE")  127.0.0.1:$KAFKA_PORT not open yet  log $LOG"
  else
    echo "kafka     down  127.0.0.1:$KAFKA_PORT"
  fi
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: $0 install|start|stop|status" ;;
esac
