#!/usr/bin/env bash
# HBase 2.6 standalone (HMaster + region server + ZooKeeper in one JVM, local filesystem) and its
# Thrift 1 server (what happybase speaks) as a second JVM, assembled from Maven Central jars.
#   deploy/hbase.sh install | start | stop | status
# The jars come from deploy/jvm/hbase/pom.xml into $CACHE_DIR/jvm/hbase/<pom hash>/lib; config,
# data, pid files and logs live under $STATE_DIR/hbase. See deploy/README.md ("Kafka and HBase").
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$DEPLOY_DIR/jvm-lib.sh"

POM="$DEPLOY_DIR/jvm/hbase/pom.xml"
HOME_DIR="$STATE_DIR/hbase"
CONF_DIR="$HOME_DIR/conf"
DATA_DIR="$HOME_DIR/data"
LOG_DIR="$HOME_DIR/logs"
MASTER_LOG="$LOG_DIR/master.out"
THRIFT_LOG="$LOG_DIR/thrift.out"
MASTER_PID="$HOME_DIR/master.pid"
THRIFT_PID="$HOME_DIR/thrift.pid"
JAVA="${JAVA:-java}"
MASTER_HEAP_OPTS="${MIG_HBASE_MASTER_HEAP_OPTS:--Xms256m -Xmx1g}"
THRIFT_HEAP_OPTS="${MIG_HBASE_THRIFT_HEAP_OPTS:--Xms64m -Xmx256m}"
READY_TIMEOUT="${MIG_HBASE_READY_TIMEOUT:-120}"
# An idle happybase connection is cut by the Thrift server after this long (default 60 s).
THRIFT_READ_TIMEOUT_MS="${MIG_HBASE_THRIFT_READ_TIMEOUT_MS:-86400000}"

LIB_PARENT="$(jvm_lib_parent hbase)"
LIB_DIR="$LIB_PARENT/lib"

install() { jvm_install hbase HBase; }

prop() { printf '  <property><name>%s</name><value>%s</value></property>\n' "$1" "$2"; }

write_config() {
  mkdir -p "$CONF_DIR" "$DATA_DIR" "$LOG_DIR" "$HOME_DIR/tmp"
  {
    echo '<?xml version="1.0"?>'
    echo '<!-- Written by deploy/hbase.sh on every start; edit the script, not this file. -->'
    echo '<configuration>'
    # Standalone: master, region server and ZooKeeper in one JVM, data on the local filesystem.
    prop hbase.cluster.distributed false
    prop hbase.rootdir "file://$DATA_DIR/hbase"
    prop hbase.tmp.dir "$HOME_DIR/tmp"
    prop hbase.zookeeper.property.dataDir "$DATA_DIR/zookeeper"
    prop hbase.zookeeper.quorum 127.0.0.1
    prop hbase.zookeeper.property.clientPort "$ZOOKEEPER_PORT"
    # The local filesystem has no hflush/hsync; without this the WAL refuses to start.
    prop hbase.unsafe.stream.capability.enforce false
    # Everything on loopback, under a name that resolves the same everywhere; no web UIs.
    prop hbase.master.hostname 127.0.0.1
    prop hbase.unsafe.regionserver.hostname 127.0.0.1
    prop hbase.master.ipc.address 127.0.0.1
    prop hbase.regionserver.ipc.address 127.0.0.1
    # Master and region server RPC on ports the OS picks (the fixed 16000/16020 could clash);
    # clients find them through ZooKeeper.
    prop hbase.localcluster.assign.random.ports true
    prop hbase.master.info.port -1
    prop hbase.regionserver.info.port -1
    prop hbase.thrift.info.port -1
    # Thrift 1 as happybase expects it: thread pool, buffered transport, binary protocol.
    prop hbase.regionserver.thrift.ipaddress 127.0.0.1
    prop hbase.regionserver.thrift.port "$HBASE_THRIFT_PORT"
    prop hbase.regionserver.thrift.framed false
    prop hbase.regionserver.thrift.compact false
    prop hbase.thrift.server.socket.read.timeout "$THRIFT_READ_TIMEOUT_MS"
    echo '</configuration>'
  } >"$CONF_DIR/hbase-site.xml"
  cat >"$CONF_DIR/log4j2.properties" <<'EOF'
status = warn
dest = err
name = HBaseStandalone
appender.console.type = Console
appender.console.target = SYSTEM_ERR
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{ISO8601} %-5p [%t] %c{2}: %.1000m%n
rootLogger = INFO,console
logger.zookeeper.name = org.apache.zookeeper
logger.zookeeper.level = WARN
logger.hadoop.name = org.apache.hadoop
logger.hadoop.level = WARN
logger.hbase.name = org.apache.hadoop.hbase
logger.hbase.level = INFO
logger.metrics.name = org.apache.hadoop.metrics2
logger.metrics.level = ERROR
EOF
}

# JVM flags of HBase's own bin/hbase on JDK 11+/17: its shaded netty and unsafe access need them.
java_args() {  # heap opts; fills JVM_ARGS: everything before the main class
  # shellcheck disable=SC2206
  JVM_ARGS=($1 -XX:+UseG1GC -XX:MaxGCPauseMillis=100 -Djava.awt.headless=true
    -Djava.net.preferIPv4Stack=true
    --add-modules jdk.unsupported
    --add-opens java.base/java.nio=ALL-UNNAMED
    --add-opens java.base/sun.nio.ch=ALL-UNNAMED
    --add-opens java.base/java.lang=ALL-UNNAMED
    --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
    --add-opens java.base/java.lang.reflect=ALL-UNNAMED
    --add-opens java.base/java.io=ALL-UNNAMED
    --add-opens java.base/java.util=ALL-UNNAMED
    --add-opens java.base/java.util.concurrent=ALL-UNNAMED
    --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
    --add-exports java.security.jgss/sun.security.krb5=ALL-UNNAMED
    --add-exports java.base/sun.net.dns=ALL-UNNAMED
    --add-exports java.base/sun.net.util=ALL-UNNAMED
    -Dorg.apache.hbase.thirdparty.io.netty.tryReflectionSetAccessible=true
    "-Dlog4j2.configurationFile=file:$CONF_DIR/log4j2.properties"
    -Djava.util.logging.config.class=org.apache.hadoop.hbase.logging.JulToSlf4jInitializer
    "-Dhbase.log.dir=$LOG_DIR" "-Dhbase.home.dir=$HOME_DIR"
    -cp "$CONF_DIR:$LIB_DIR/*")
}

thrift_probe() { "$VENV_DIR/bin/python" "$DEPLOY_DIR/probe.py" hbase 127.0.0.1 "$HBASE_THRIFT_PORT"; }

# Poll target for wait_until: fail the whole start at once if a JVM died.
alive_and() {  # pidfile logfile name cmd...
  local pidfile=$1 logfile=$2 name=$3; shift 3
  if ! pid_alive "$pidfile"; then
    printf 'error: %s exited during startup. Last lines of %s:\n' "$name" "$logfile" >&3
    tail -n 30 "$logfile" >&3
    exit 1
  fi
  "$@"
}

# The master is serving once this run's part of its log says so (ZooKeeper up, meta assigned,
# namespaces created). MASTER_LOG_OFFSET is the log's size when this run started.
MASTER_LOG_OFFSET=0
master_initialized() {
  tail -c "+$((MASTER_LOG_OFFSET + 1))" "$MASTER_LOG" | grep 'Master has completed initialization' >/dev/null
}

start_master() {
  if pid_alive "$MASTER_PID"; then
    log "hbase master already running (pid $(cat "$MASTER_PID"))"
    return 0
  fi
  rm -f "$MASTER_PID"
  require_free_port "$ZOOKEEPER_PORT" "hbase zookeeper"
  log "starting hbase master (standalone, zookeeper 127.0.0.1:$ZOOKEEPER_PORT), log $MASTER_LOG"
  printf '\n==== start %s ====\n' "$(date '+%F %T')" >>"$MASTER_LOG"
  MASTER_LOG_OFFSET=$(stat -c %s "$MASTER_LOG")
  java_args "$MASTER_HEAP_OPTS"
  setsid "$JAVA" "${JVM_ARGS[@]}" org.apache.hadoop.hbase.master.HMaster start \
    </dev/null >>"$MASTER_LOG" 2>&1 3>&- &
  echo $! >"$MASTER_PID"
}

start_thrift() {
  if pid_alive "$THRIFT_PID"; then
    log "hbase thrift already running (pid $(cat "$THRIFT_PID"))"
    return 0
  fi
  rm -f "$THRIFT_PID"
  log "starting hbase thrift 1 server on 127.0.0.1:$HBASE_THRIFT_PORT, log $THRIFT_LOG"
  printf '\n==== start %s ====\n' "$(date '+%F %T')" >>"$THRIFT_LOG"
  java_args "$THRIFT_HEAP_OPTS"
  setsid "$JAVA" "${JVM_ARGS[@]}" org.apache.hadoop.hbase.thrift.ThriftServer \
    -b 127.0.0.1 -p "$HBASE_THRIFT_PORT" -threadpool start </dev/null >>"$THRIFT_LOG" 2>&1 3>&- &
  echo $! >"$THRIFT_PID"
}

# A pid file left from before a reboot may name an unrelated process: only ours counts.
drop_foreign_pidfile() {  # pidfile main-class
  if pid_alive "$1" && ! grep -qaF "$2" "/proc/$(cat "$1")/cmdline" 2>/dev/null; then
    rm -f "$1"
  fi
}

start() {
  [[ -x "$VENV_DIR/bin/python" ]] || die "no Python venv at $VENV_DIR (its python runs the readiness probe)"
  drop_foreign_pidfile "$MASTER_PID" org.apache.hadoop.hbase.master.HMaster
  drop_foreign_pidfile "$THRIFT_PID" org.apache.hadoop.hbase.thrift.ThriftServer
  if pid_alive "$MASTER_PID" && pid_alive "$THRIFT_PID" && thrift_probe >/dev/null 2>&1; then
    log "hbase already running (master pid $(cat "$MASTER_PID"), thrift pid $(cat "$THRIFT_PID"), port $HBASE_THRIFT_PORT)"
    return 0
  fi
  pid_alive "$THRIFT_PID" || require_free_port "$HBASE_THRIFT_PORT" "hbase thrift"
  install
  check_one_slf4j_binding "$LIB_DIR"
  exec 3>&2
  if ! pid_alive "$MASTER_PID"; then
    write_config
    start_master
    wait_until "$READY_TIMEOUT" "$MASTER_LOG" "hbase master" \
      alive_and "$MASTER_PID" "$MASTER_LOG" "hbase master" master_initialized
    log "hbase master initialised (pid $(cat "$MASTER_PID"))"
  fi
  start_thrift
  wait_until "$READY_TIMEOUT" "$THRIFT_LOG" "hbase thrift on 127.0.0.1:$HBASE_THRIFT_PORT" \
    alive_and "$THRIFT_PID" "$THRIFT_LOG" "hbase thrift" thrift_probe
  exec 3>&-
  log "hbase ready (master pid $(cat "$MASTER_PID"), thrift pid $(cat "$THRIFT_PID"), port $HBASE_THRIFT_PORT)"
}

stop() {
  if pid_alive "$THRIFT_PID" || pid_alive "$MASTER_PID"; then
    log "stopping hbase"
  else
    log "hbase is not running"
  fi
  stop_pidfile "$THRIFT_PID" "hbase thrift"
  stop_master
}

# A plain SIGTERM stops the master (and with it the embedded ZooKeeper) before the region server
# has let go of ZooKeeper: the region server then retries ZooKeeper for ~20 s. Asking the cluster
# to shut down (what `hbase master stop --shutDownCluster` does) closes the regions first and
# takes ~10 s. SIGTERM, then SIGKILL, remain the fallback (stop_pidfile).
stop_master() {
  if pid_alive "$MASTER_PID" && [[ -f "$CONF_DIR/hbase-site.xml" ]]; then
    java_args "-Xmx128m"
    timeout 60 "$JAVA" "${JVM_ARGS[@]}" org.apache.hadoop.hbase.master.HMaster stop --shutDownCluster \
      </dev/null >"$LOG_DIR/stop.out" 2>&1 \
      || log "hbase shutdown request failed (see $LOG_DIR/stop.out); signalling the master"
    for _ in $(seq 1 60); do pid_alive "$MASTER_PID" || break; sleep 1; done
    pid_alive "$MASTER_PID" || log "hbase master stopped"
  fi
  stop_pidfile "$MASTER_PID" "hbase master"
}

status() {
  local m t
  if pid_alive "$MASTER_PID"; then m="master pid $(cat "$MASTER_PID")"; else m="master down"; fi
  if pid_alive "$THRIFT_PID"; then t="thrift pid $(cat "$THRIFT_PID")"; else t="thrift down"; fi
  if pid_alive "$MASTER_PID" && pid_alive "$THRIFT_PID" && port_open "$HBASE_THRIFT_PORT"; then
    echo "hbase     up    $m, $t  127.0.0.1:$HBASE_THRIFT_PORT  log $LOG_DIR"
  else
    echo "hbase     down  ($m, $t)  127.0.0.1:$HBASE_THRIFT_PORT"
  fi
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: $0 install|start|stop|status" ;;
esac
