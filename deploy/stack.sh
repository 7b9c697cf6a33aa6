#!/usr/bin/env bash
# The whole stack: install what is missing (cached), start what is down, wait until each part
# really answers. Usage: stack.sh up | down | status | install | pipeline | pipeline-stop
#   pipeline: the services (as `up`), then the capture pipeline under supervisord (pipeline.sh)
# MIG_ENGINE=embedded (`make up ENGINE=embedded`): the new core on files under $MIG_EMBEDDED_DIR,
# so Kafka and HBase are neither installed nor started (no JVM); the rest is the same.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_all() {
  bash "$DEPLOY_DIR/install-system.sh"
  bash "$DEPLOY_DIR/install-python.sh"
  embedded && return 0
  bash "$DEPLOY_DIR/kafka.sh" install
  bash "$DEPLOY_DIR/hbase.sh" install
}

start_services() {
  mkdir -p "$STATE_DIR"
  install_all
  bash "$DEPLOY_DIR/mariadb.sh" start
  bash "$DEPLOY_DIR/web.sh" start
  bash "$DEPLOY_DIR/frontdoor.sh" start
  if embedded; then
    mkdir -p "$EMBEDDED_DIR"
    return 0
  fi
  # The JVMs take longest; start them side by side and wait for both.
  bash "$DEPLOY_DIR/kafka.sh" start & local kafka=$!
  bash "$DEPLOY_DIR/hbase.sh" start & local hbase=$!
  local failed=0
  wait "$kafka" || failed=1
  wait "$hbase" || failed=1
  (( failed == 0 )) || die "a service did not start (messages above)"
}

up() {
  start_services
  status
}

pipeline() {
  start_services
  bash "$DEPLOY_DIR/pipeline.sh" start
  status
}

down() {
  bash "$DEPLOY_DIR/pipeline.sh" stop || true
  bash "$DEPLOY_DIR/hbase.sh" stop || true
  bash "$DEPLOY_DIR/kafka.sh" stop || true
  bash "$DEPLOY_DIR/frontdoor.sh" stop || true
  bash "$DEPLOY_DIR/web.sh" stop || true
  bash "$DEPLOY_DIR/mariadb.sh" stop || true
}

status() {
  if embedded; then
    echo "engine    embedded  (MIG_ENGINE) topics and read model under $EMBEDDED_DIR; Kafka and HBase not used"
  else
    echo "engine    kafka-hbase  (MIG_ENGINE; \`make ... ENGINE=embedded\` for files, no JVM)"
  fi
  bash "$DEPLOY_DIR/mariadb.sh" status
  bash "$DEPLOY_DIR/web.sh" status
  bash "$DEPLOY_DIR/frontdoor.sh" status
  if ! embedded; then
    bash "$DEPLOY_DIR/kafka.sh" status
    bash "$DEPLOY_DIR/hbase.sh" status
  fi
  bash "$DEPLOY_DIR/pipeline.sh" status
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  install) install_all ;;
  pipeline) pipeline ;;
  pipeline-stop) bash "$DEPLOY_DIR/pipeline.sh" stop ;;
  *) die "usage: $0 up|down|status|install|pipeline|pipeline-stop" ;;
esac
