#!/usr/bin/env bash
# The monolith stand-in: PHP 8.2 under PHP-FPM behind nginx, all from Debian's packages, run
# with their own configuration under the state dir. Applies the legacy schema (idempotent).
# Usage: web.sh start | stop | status
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LIMITED_PORT="${MIG_MONOLITH_LIMITED_PORT:-8081}"
check_port_setting MIG_MONOLITH_LIMITED_PORT "$LIMITED_PORT"
RATE_LIMIT="${MIG_MONOLITH_RATE_LIMIT:-off}"
[[ "$RATE_LIMIT" == on || "$RATE_LIMIT" == off ]] || die "MIG_MONOLITH_RATE_LIMIT='$RATE_LIMIT' must be on or off"
FPM_CHILDREN="${MIG_MONOLITH_FPM_CHILDREN:-8}"
[[ "$FPM_CHILDREN" =~ ^[1-9][0-9]?$ ]] || die "MIG_MONOLITH_FPM_CHILDREN='$FPM_CHILDREN' must be 1..99"

DIR="$STATE_DIR/web"
APP="$DEPLOY_DIR/monolith"
FPM_PID="$DIR/php-fpm.pid"
NGINX_PID="$DIR/nginx.pid"
FPM=/usr/sbin/php-fpm8.2

write_config() {
  mkdir -p "$DIR/logs" "$DIR/tmp"
  chown www-data:www-data "$DIR/logs"
  umask 077
  cat > "$DIR/php-fpm.conf" <<CONF
[global]
pid = $FPM_PID
error_log = $DIR/logs/php-fpm.log
daemonize = yes

[chat]
user = www-data
group = www-data
listen = $DIR/php-fpm.sock
listen.owner = www-data
listen.group = www-data
pm = static
pm.max_children = $FPM_CHILDREN
clear_env = yes
env[CHAT_DB_HOST] = 127.0.0.1
env[CHAT_DB_PORT] = $MARIADB_PORT
env[CHAT_DB_NAME] = ${MIG_DB_NAME:-chat}
env[CHAT_DB_USER] = ${MIG_DB_USER:-chat}
env[CHAT_DB_PASSWORD] = ${MIG_DB_PASSWORD:-chat}
php_admin_flag[log_errors] = on
php_admin_flag[display_errors] = off
php_admin_value[error_log] = $DIR/logs/php-errors.log
php_admin_value[opcache.enable] = 1
php_admin_value[memory_limit] = 128M
CONF
  umask 022
  server_block() {  # port rate-limit
    cat <<BLOCK
  server {
    listen 127.0.0.1:$1 backlog=4096;
    client_max_body_size 2m;
    location / {
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME $APP/public/index.php;
      fastcgi_param CHAT_RATE_LIMIT $2;
      fastcgi_pass php;
    }
  }
BLOCK
  }
  cat > "$DIR/nginx.conf" <<CONF
user www-data;
worker_processes 2;
pid $NGINX_PID;
error_log $DIR/logs/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log $DIR/logs/access.log combined buffer=256k flush=2s;
  client_body_temp_path $DIR/tmp/body;
  fastcgi_temp_path $DIR/tmp/fastcgi;
  proxy_temp_path $DIR/tmp/proxy;
  uwsgi_temp_path $DIR/tmp/uwsgi;
  scgi_temp_path $DIR/tmp/scgi;
  keepalive_requests 100000;
  # No FastCGI keep-alive: idle cached connections hold FPM workers (static pool), and requests
  # arriving through the other nginx worker then wait for keepalive_timeout. A unix socket
  # connection per request costs next to nothing.
  upstream php { server unix:$DIR/php-fpm.sock; }
$(server_block "$MONOLITH_PORT" "$RATE_LIMIT")
  # The same app with the public API's rate limits on, for clients and tests that want them.
$(server_block "$LIMITED_PORT" on)
}
CONF
}

answers() {  # a real round trip: nginx -> PHP-FPM -> PHP -> MariaDB (the token look-up)
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' -H 'X-ChatWorkToken: readiness-probe' \
    "http://127.0.0.1:$MONOLITH_PORT/v2/me") && [[ "$code" == 401 ]]
}

start() {
  [[ -x "$FPM" ]] && command -v nginx >/dev/null || die "php-fpm8.2 or nginx missing: run deploy/install-system.sh"
  bash "$DEPLOY_DIR/mariadb.sh" sql "${MIG_DB_NAME:-chat}" < "$APP/schema.sql" \
    || die "could not apply deploy/monolith/schema.sql (is mariadb up? deploy/mariadb.sh status)"
  if pid_alive "$FPM_PID" && pid_alive "$NGINX_PID" && answers; then
    log "monolith already answering on http://127.0.0.1:$MONOLITH_PORT"
    return
  fi
  stop_all quiet
  require_free_port "$MONOLITH_PORT" "the monolith (nginx)"
  require_free_port "$LIMITED_PORT" "the rate-limited monolith (nginx)"
  write_config
  "$FPM" --fpm-config "$DIR/php-fpm.conf" -t >"$DIR/logs/fpm-test.log" 2>&1 \
    || { cat "$DIR/logs/fpm-test.log" >&2; die "php-fpm configuration rejected ($DIR/php-fpm.conf)"; }
  nginx -t -c "$DIR/nginx.conf" >"$DIR/logs/nginx-test.log" 2>&1 \
    || { cat "$DIR/logs/nginx-test.log" >&2; die "nginx configuration rejected ($DIR/nginx.conf)"; }
  log "starting php-fpm ($FPM_CHILDREN workers) and nginx on 127.0.0.1:$MONOLITH_PORT (+$LIMITED_PORT rate-limited)"
  "$FPM" --fpm-config "$DIR/php-fpm.conf" || die "php-fpm did not start; see $DIR/logs/php-fpm.log"
  nginx -c "$DIR/nginx.conf" || die "nginx did not start; see $DIR/logs/nginx-error.log"
  wait_until 30 "$DIR/logs/php-errors.log" "the monolith (nginx + php-fpm + mariadb)" answers
  log "monolith ready on http://127.0.0.1:$MONOLITH_PORT"
}

stop_all() {
  stop_pidfile "$NGINX_PID" nginx
  stop_pidfile "$FPM_PID" php-fpm
}

case "${1:-}" in
  start) start ;;
  stop) stop_all ;;
  status)
    if pid_alive "$NGINX_PID" && pid_alive "$FPM_PID"; then
      echo "monolith  up    nginx pid $(cat "$NGINX_PID"), php-fpm pid $(cat "$FPM_PID")  http://127.0.0.1:$MONOLITH_PORT  logs $DIR/logs"
    else echo "monolith  down"; fi ;;
  *) die "usage: $0 start|stop|status" ;;
esac
