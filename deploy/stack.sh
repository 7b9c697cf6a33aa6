#!/usr/bin/env bash
# The whole stack: install what is missing (cached), start what is down, wait until each part
# really answers. Usage: stack.sh up | down | status | install | pipeline | pipeline-stop
#   pipeline: the services (as `up`), then the capture pipeline under supervisord (pipeline.sh)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_all() {
  bash "$DEPLOY_DIR/install-system.sh"
  bash "$DEPLOY_DIR/install-python.sh"
  bash "$DEPLOY_DIR/kafka.sh" install
  bash "$DEPLOY_DIR/hbase.sh" install
}

start_services() {
  mkdir -p "$STATE_DIR"
  install_all
  bash "$DEPLOY_DIR/mariadb.sh" start
  bash "$DEPLOY_DIR/web.sh" start
  bash "$DEPLOY_DIR/frontdoor.sh" start
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
  bash "$DEPLOY_DIR/mariadb.sh" status
  bash "$DEPLOY_DIR/web.sh" status
  bash "$DEPLOY_DIR/frontdoor.sh" status
  bash "$DEPLOY_DIR/kafka.sh" status
  bash "$DEPLOY_DIR/hbase.sh" status
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
