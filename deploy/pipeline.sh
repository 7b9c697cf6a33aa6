#!/usr/bin/env bash
# The capture pipeline (chat-binlog-source, chat-capturer, chat-updater), the new core's Read API
# (chat-read-api) and the gateway (chat-gateway) under a supervisord of
# the project's own: a program that dies is started again; logs, config, socket and pid file
# live under the pipeline dir ($STATE_DIR/pipeline unless MIG_PIPELINE_DIR says otherwise).
#   deploy/pipeline.sh start | stop | status
# `start` expects the services up: `deploy/stack.sh pipeline` (`make pipeline`) starts them first.
# MIG_ENGINE=embedded: the same programs on the embedded topics and read model under
# $MIG_EMBEDDED_DIR (no Kafka, no HBase); the engine a pipeline was started with is kept in
# $DIR/engine and shown by `status`.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DIR="${MIG_PIPELINE_DIR:-$STATE_DIR/pipeline}"
CONF="$DIR/supervisord.conf"
SOCK="$DIR/supervisor.sock"
PIDF="$DIR/supervisord.pid"
SUPERVISORD_LOG="$DIR/supervisord.log"
STAMP="$DIR/started-with.sha256"
READY_TIMEOUT="${MIG_PIPELINE_READY_TIMEOUT:-60}"
[[ "$READY_TIMEOUT" =~ ^[1-9][0-9]{0,3}$ ]] || die "MIG_PIPELINE_READY_TIMEOUT='$READY_TIMEOUT' must be 1..9999 (seconds)"
# A unix socket path holds at most 107 bytes; supervisord's config takes no quoting.
(( ${#SOCK} <= 107 )) || die "MIG_PIPELINE_DIR is too long for supervisord's socket ($SOCK): at most 107 bytes"
[[ "$DIR$VENV_DIR$PROJECT_DIR" != *[%\;#\"]* ]] || die "the pipeline dir, the venv and the project's path must hold no % ; # or \""

# The Read API and the gateway: the first of the front door's gateway ports is this pipeline's.
READ_API_PORT="${MIG_READ_API_PORT:-8070}"
GATEWAY_PORT="${GATEWAY_PORTS%%,*}"
GATEWAY_ADMIN_PORT="${MIG_GATEWAY_ADMIN_PORT:-8091}"
for _p in READ_API_PORT GATEWAY_ADMIN_PORT; do check_port_setting "MIG_$_p" "${!_p}"; done

PROGRAMS=(binlog-source capturer updater read-api gateway)
declare -A COMMAND=([binlog-source]=chat-binlog-source [capturer]=chat-capturer [updater]=chat-updater
  [read-api]=chat-read-api [gateway]=chat-gateway)
declare -A OPS_PORT=([binlog-source]=$BINLOG_OPS_PORT [capturer]=$CAPTURER_OPS_PORT [updater]=$UPDATER_OPS_PORT
  [read-api]=$READ_API_PORT [gateway]=$GATEWAY_ADMIN_PORT)
# The new side runs below the serving path's CPU priority: on shared cores its catch-up after an
# outage (or a backfill) yields to the gateway, which clients wait on (promise 1). `nice` execs
# the program, so supervisord still signals the program itself.
NEW_SIDE_NICE=10
declare -A NICE=([binlog-source]=$NEW_SIDE_NICE [capturer]=$NEW_SIDE_NICE [updater]=$NEW_SIDE_NICE
  [read-api]=$NEW_SIDE_NICE [gateway]=0)
# The gateway lets the requests under way finish when it stops (MIG_GATEWAY_DRAIN_S, 65 s).
declare -A STOP_WAIT=([gateway]=75)
# The gateway's admin token: MIG_GATEWAY_ADMIN_TOKEN, or one made once for this machine and kept
# in a file only root reads (the demo and the CLI read it there; it never reaches a log).
TOKEN_FILE="$STATE_DIR/gateway/admin-token"

ctl() { supervisorctl -c "$CONF" "$@"; }

program_section() {  # name
  cat <<EOF

[program:$1]
command=nice -n ${NICE[$1]} $VENV_DIR/bin/${COMMAND[$1]}
directory=$PROJECT_DIR
autostart=true
; Restarted when it dies (a kill, exit 1 or 4); not for what an operator must fix: a bad
; setting (2), a misconfiguration (3), another copy took over (5). Those stay EXITED, and
; status and start say so, instead of a restart loop (two binlog sources fencing each other).
autorestart=unexpected
exitcodes=0,2,3,5
startsecs=2
startretries=5
stopsignal=TERM
stopwaitsecs=${STOP_WAIT[$1]:-15}
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile=$DIR/$1.log
stdout_logfile_maxbytes=20MB
stdout_logfile_backups=3
EOF
}

# supervisord's config, on stdout. The programs' settings are not in it: they inherit the MIG_*
# environment supervisord is started with (see start), so no value (a password) has to survive
# supervisord's INI parsing (inline ; and # comments, % interpolation, quotes).
render_config() {
  cat <<EOF
; Written by deploy/pipeline.sh when it starts supervisord; edit the script, not this file.
[unix_http_server]
file=$SOCK
chmod=0700

[supervisord]
pidfile=$PIDF
logfile=$SUPERVISORD_LOG
logfile_maxbytes=5MB
logfile_backups=2
childlogdir=$DIR
directory=$PROJECT_DIR
identifier=chat-pipeline
user=$(id -u)

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://$SOCK
EOF
  local p
  for p in "${PROGRAMS[@]}"; do program_section "$p"; done
}

# The environment supervisord and so every program (and every restart) gets: a clean one, the
# caller's MIG_* settings, and where the services the scripts started answer.
pipeline_environment() {  # fills ENVIRONMENT
  export MIG_KAFKA_BOOTSTRAP="${MIG_KAFKA_BOOTSTRAP:-127.0.0.1:$KAFKA_PORT}"
  export MIG_MARIADB_PORT="$MARIADB_PORT" MIG_HBASE_THRIFT_PORT="$HBASE_THRIFT_PORT"
  export MIG_BINLOG_OPS_PORT="$BINLOG_OPS_PORT" MIG_CAPTURER_OPS_PORT="$CAPTURER_OPS_PORT"
  export MIG_UPDATER_OPS_PORT="$UPDATER_OPS_PORT"
  export MIG_READ_API_PORT="$READ_API_PORT" MIG_GATEWAY_PORT="$GATEWAY_PORT"
  export MIG_GATEWAY_ADMIN_PORT="$GATEWAY_ADMIN_PORT" MIG_SHADOW_READ_API="http://127.0.0.1:$READ_API_PORT"
  export MIG_GATEWAY_UPSTREAM="http://127.0.0.1:$MONOLITH_PORT"
  export MIG_GATEWAY_ROOM_MAP="${MIG_GATEWAY_ROOM_MAP:-$FRONTDOOR_DIR/room_map.conf}"
  export MIG_GATEWAY_FRONTDOOR_PID="${MIG_GATEWAY_FRONTDOOR_PID:-$FRONTDOOR_DIR/nginx.pid}"
  export MIG_SPOOL_DIR="${MIG_SPOOL_DIR:-$STATE_DIR/gateway/spool}"
  if embedded; then
    # Absolute: every program (and `chat-migrate`, run from anywhere) finds the same files.
    export MIG_ENGINE=embedded MIG_EMBEDDED_DIR="$EMBEDDED_DIR"
  fi
  if [[ -z "${MIG_GATEWAY_ADMIN_TOKEN:-}" ]]; then
    if [[ ! -s "$TOKEN_FILE" ]]; then
      mkdir -p "$(dirname "$TOKEN_FILE")"
      (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$TOKEN_FILE")
    fi
    export MIG_GATEWAY_ADMIN_TOKEN="$(cat "$TOKEN_FILE")"
  fi
  ENVIRONMENT=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" "HOME=$HOME" "LANG=C.UTF-8")
  local name
  while read -r name; do ENVIRONMENT+=("$name=${!name}"); done < <(compgen -e | grep '^MIG_' | sort)
}

# What this call would start supervisord with; its hash (no secret on disk) tells a later call
# whether the running pipeline is on other settings.
fingerprint() { { render_config; printf '%s\n' "${ENVIRONMENT[@]}"; } | sha256sum | cut -c1-64; }

supervisord_alive() {
  pid_alive "$PIDF" && grep -qaF supervisord "/proc/$(cat "$PIDF")/cmdline" 2>/dev/null
}

# STATE[name] and PID[name] from supervisorctl (empty when supervisord does not answer).
declare -A STATE PID
read_states() {
  STATE=() PID=()
  local name state rest
  while read -r name state rest; do
    [[ -n "${COMMAND[$name]:-}" ]] || continue
    STATE[$name]=$state
    if [[ "$rest" =~ pid\ ([0-9]+) ]]; then PID[$name]=${BASH_REMATCH[1]}; fi
  done < <(ctl status 2>/dev/null || true)
}

# "ok", or what is wrong: the 503's JSON body, or that nothing answers. Status 0 when ok.
health() {  # port
  local out code
  out=$(curl -s -m 3 -w '\n%{http_code}' "http://127.0.0.1:$1/healthz" 2>/dev/null) || true
  code=${out##*$'\n'}
  if [[ "$code" == 200 ]]; then echo ok; return 0; fi
  if [[ -z "$code" || "$code" == 000 ]]; then echo "no answer on 127.0.0.1:$1/healthz"; return 1; fi
  echo "$code ${out%$'\n'*}"
  return 1
}

wait_ready() {
  local t=0 p pending
  while :; do
    read_states
    pending=()
    for p in "${PROGRAMS[@]}"; do
      if [[ "${STATE[$p]:-}" == FATAL || "${STATE[$p]:-}" == EXITED ]]; then
        printf 'error: %s exited and is not restarted (%s: FATAL = it kept dying; EXITED = exit 2, 3 or 5, a setting or another copy to fix). Last lines of %s:\n' "$p" "${STATE[$p]}" "$DIR/$p.log" >&2
        tail -n 30 "$DIR/$p.log" >&2 || true
        exit 1
      fi
      health "${OPS_PORT[$p]}" >/dev/null || pending+=("$p")
    done
    (( ${#pending[@]} == 0 )) && return 0
    if (( t >= READY_TIMEOUT )); then
      for p in "${pending[@]}"; do
        printf 'error: %s not healthy within %ss (%s): %s. Last lines of %s:\n' "$p" "$READY_TIMEOUT" \
          "${STATE[$p]:-unknown}" "$(health "${OPS_PORT[$p]}")" "$DIR/$p.log" >&2
        tail -n 15 "$DIR/$p.log" >&2 || true
      done
      exit 1
    fi
    sleep 1; t=$((t + 1))
  done
}

start() {
  if ! command -v supervisord >/dev/null || ! command -v supervisorctl >/dev/null; then
    die "supervisord not found: run deploy/install-system.sh"
  fi
  local p
  for p in "${PROGRAMS[@]}" read-model-init; do
    [[ -x "$VENV_DIR/bin/chat-$p" ]] || die "$VENV_DIR/bin/chat-$p missing: run deploy/install-python.sh"
  done
  mkdir -p "$DIR"
  pipeline_environment
  if supervisord_alive; then
    [[ "$(cat "$STAMP" 2>/dev/null)" == "$(fingerprint)" ]] \
      || log "warning: the pipeline runs with other settings than this call's (MIG_* or config); restart it to apply (deploy/stack.sh pipeline-stop && make pipeline)"
    read_states
    for p in "${PROGRAMS[@]}"; do
      case "${STATE[$p]:-}" in
        RUNNING|STARTING|BACKOFF) ;;
        *) log "starting $p (was ${STATE[$p]:-unknown})"; ctl start "$p" >/dev/null || true ;;
      esac
    done
  else
    rm -f "$PIDF"
    stop_orphans
    for p in "${PROGRAMS[@]}"; do require_free_port "${OPS_PORT[$p]}" "the $p's ops endpoint"; done
    if embedded; then
      # The updater makes the read model's SQLite file and its tables when it starts.
      mkdir -p "$EMBEDDED_DIR"
      log "engine: embedded (topics and read model under $EMBEDDED_DIR)"
    else
      # The tables once, before the updater (which would also create missing ones itself).
      local out
      out=$(env -i "${ENVIRONMENT[@]}" "$VENV_DIR/bin/chat-read-model-init" 2>&1) \
        || die "chat-read-model-init failed: $out"
      log "$out"
    fi
    umask 077
    render_config >"$CONF"
    fingerprint >"$STAMP"
    if embedded; then echo "embedded $EMBEDDED_DIR" >"$DIR/engine"; else echo kafka-hbase >"$DIR/engine"; fi
    umask 022
    log "starting the pipeline under supervisord (config $CONF, logs $DIR)"
    env -i "${ENVIRONMENT[@]}" supervisord -c "$CONF" \
      || die "supervisord did not start; see $SUPERVISORD_LOG"
  fi
  wait_ready
  read_states
  log "pipeline ready: $(for p in "${PROGRAMS[@]}"; do printf '%s pid %s :%s  ' "$p" "${PID[$p]:-?}" "${OPS_PORT[$p]}"; done)"
}

# A program left running by a supervisord that was killed (kill -9, OOM) still holds its ops
# port: the pid of one of ours (our venv's command) on that port, if any.
orphan_pid() {  # program
  local pid
  port_open "${OPS_PORT[$1]}" || return 1
  pid=$(ss -ltnpH "sport = :${OPS_PORT[$1]}" 2>/dev/null | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n1)
  [[ -n "$pid" ]] || return 1
  grep -qaF "$VENV_DIR/bin/${COMMAND[$1]}" "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

stop_orphans() {
  local p pid
  for p in "${PROGRAMS[@]}"; do
    pid=$(orphan_pid "$p") || continue
    mkdir -p "$DIR"
    echo "$pid" >"$DIR/$p.orphan.pid"
    log "stopping $p (pid $pid), left running without its supervisord"
    stop_pidfile "$DIR/$p.orphan.pid" "$p"
  done
}

stop() {
  if supervisord_alive; then
    log "stopping the pipeline (supervisord pid $(cat "$PIDF"))"
    # Stops every program (TERM, KILL after stopwaitsecs) and then supervisord itself.
    ctl shutdown >/dev/null 2>&1 || true
    local t
    for t in $(seq 1 40); do supervisord_alive || break; sleep 1; done
    stop_pidfile "$PIDF" supervisord
    log "pipeline stopped"
  else
    rm -f "$PIDF"
    log "pipeline is not running"
  fi
  stop_orphans
}

status() {
  local p pid
  if ! supervisord_alive; then
    echo "pipeline  not started (make pipeline)"
    for p in "${PROGRAMS[@]}"; do
      if pid=$(orphan_pid "$p"); then
        echo "  $p pid $pid runs without supervisord (deploy/stack.sh pipeline-stop stops it)"
      fi
    done
    return 0
  fi
  echo "pipeline  up    supervisord pid $(cat "$PIDF")  engine $(cat "$DIR/engine" 2>/dev/null || echo kafka-hbase)  config $CONF  logs $DIR"
  read_states
  for p in "${PROGRAMS[@]}"; do
    printf '  %-14s %-8s pid %-7s 127.0.0.1:%-5s health %s  log %s\n' "$p" "${STATE[$p]:-unknown}" \
      "${PID[$p]:--}" "${OPS_PORT[$p]}" "$(health "${OPS_PORT[$p]}")" "$DIR/$p.log"
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: $0 start|stop|status" ;;
esac
