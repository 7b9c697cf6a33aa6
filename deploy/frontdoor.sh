#!/usr/bin/env bash
# The front door: an nginx instance of our own (Debian's nginx) that receives every client
# request. Message endpoints of rooms in the room map go to the gateway (mitmproxy), with the
# monolith as backup when no gateway takes the connection; everything else goes straight to the
# monolith. The gateway writes the room map; a phase change is a graceful reload (SIGHUP).
# Configuration, pid file, room map and logs live under $STATE_DIR/frontdoor.
# Usage: frontdoor.sh start | stop | status | reload | bypass (empty the room map: the kill switch without the gateway)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DIR="$FRONTDOOR_DIR"
CONF="$DIR/nginx.conf"
PID="$DIR/nginx.pid"
ROOM_MAP="$DIR/room_map.conf"
# A gateway that does not take the connection within this time is skipped (the monolith answers).
CONNECT_TIMEOUT="${MIG_FRONTDOOR_CONNECT_TIMEOUT_MS:-200}"
[[ "$CONNECT_TIMEOUT" =~ ^[1-9][0-9]{0,4}$ ]] || die "MIG_FRONTDOOR_CONNECT_TIMEOUT_MS='$CONNECT_TIMEOUT' must be 1..99999 (milliseconds)"
for _p in ${GATEWAY_PORTS//,/ }; do
  [[ "$_p" != "$FRONTDOOR_PORT" && "$_p" != "$MONOLITH_PORT" ]] \
    || die "MIG_GATEWAY_PORTS=$GATEWAY_PORTS holds the front door's or the monolith's port ($_p)"
done
[[ "$FRONTDOOR_PORT" != "$MONOLITH_PORT" ]] || die "MIG_FRONTDOOR_PORT=$FRONTDOOR_PORT is the monolith's port"

# The way round a gateway that refused the connection, did not answer the connect in time, or
# is not there: the monolith, for a request routed to a gateway of which not one byte was sent.
# Anything else keeps its error (a request the gateway may have acted on is never sent twice;
# a monolith that failed is not asked again).
fallback_location() {  # status
  cat <<LOC
    location @gateway_refused_$1 {
      if (\$frontdoor_upstream != frontdoor_gateway) { return $1; }
      if (\$upstream_bytes_sent != "0") { return $1; }
      proxy_pass http://frontdoor_monolith;
      proxy_http_version 1.1;
      proxy_set_header Host \$frontdoor_host;
      proxy_set_header Connection "";
      proxy_pass_header Server;
      proxy_pass_header Date;
      proxy_redirect off;
      proxy_next_upstream off;
      proxy_connect_timeout ${CONNECT_TIMEOUT}ms;
      proxy_read_timeout 90s;
      proxy_send_timeout 90s;
    }
LOC
}

render_config() {
  local port gateway_servers=""
  for port in ${GATEWAY_PORTS//,/ }; do
    # nginx passes nothing on by itself (below), so it counts no failure either: a dead
    # gateway costs one refused connection per request (microseconds on this host).
    gateway_servers+="    server 127.0.0.1:$port;"$'\n'
  done
  cat <<CONF
# Written by deploy/frontdoor.sh start; the room map ($ROOM_MAP) is the gateway's.
user www-data;
worker_processes 2;
pid $PID;
error_log $DIR/logs/error.log notice;
events { worker_connections 4096; }
http {
  log_format frontdoor '\$remote_addr [\$time_local] "\$request" \$status \$body_bytes_sent '
                       '\$request_time room=\$frontdoor_room to=\$frontdoor_upstream '
                       'upstream=\$upstream_addr \$upstream_status \$upstream_response_time';
  access_log $DIR/logs/access.log frontdoor buffer=256k flush=2s;
  client_body_temp_path $DIR/tmp/body;
  proxy_temp_path $DIR/tmp/proxy;
  fastcgi_temp_path $DIR/tmp/fastcgi;
  uwsgi_temp_path $DIR/tmp/uwsgi;
  scgi_temp_path $DIR/tmp/scgi;
  keepalive_requests 100000;

  # The monolith's limit (deploy/web.sh); the whole body is held in memory, never in a temp
  # file, and read before an upstream is chosen (so a refused gateway can fall back).
  client_max_body_size 2m;
  client_body_buffer_size 2m;
  # Headers with underscores go on; the monolith's nginx decides about them as it does for a
  # direct client.
  underscores_in_headers on;
  # Answers: buffered in memory up to 1 MB; beyond that passed on as the client reads, never
  # written to a temp file.
  proxy_buffer_size 16k;
  proxy_buffers 64 16k;
  proxy_busy_buffers_size 64k;
  proxy_max_temp_file_size 0;

  # The room map's hash: large buckets keep the build of a map of random 10-digit ids short
  # (nginx tries table sizes until no bucket overflows; with 64-byte buckets a map of 10 000
  # rooms took 14 s, with 512-byte ones 0.07 s; deploy/README.md has the figures).
  map_hash_max_size 262144;
  map_hash_bucket_size 512;
  # Which room a request is about: the raw request target, as the monolith's router reads it
  # (parse_url(REQUEST_URI) then ^/v2/rooms/<room>/messages...). Anything else: no room.
  map \$request_uri \$frontdoor_room {
    "~^/v2/rooms/([0-9]+)/messages(?:[/?#]|\$)" \$1;
    default "";
  }
  # The room map the gateway writes: one line per room in an inspected phase, '"<room>" 1;'.
  # Empty: every request goes straight to the monolith (the kill switch).
  map \$frontdoor_room \$frontdoor_inspected {
    default 0;
    include $ROOM_MAP;
  }
  map \$frontdoor_inspected \$frontdoor_upstream {
    1 frontdoor_gateway;
    default frontdoor_monolith;
  }
  # The client's Host, untouched; an HTTP/1.0 request without one gets the front door's address
  # (HTTP/1.1 towards the upstream needs a Host).
  map \$http_host \$frontdoor_host {
    "" \$server_addr:\$server_port;
    default \$http_host;
  }

  # Idle upstream connections are closed by us before the upstream closes them (the monolith's
  # nginx: 75 s, 100000 requests), so a request is not sent on a connection being closed.
  upstream frontdoor_monolith {
    server 127.0.0.1:$MONOLITH_PORT;
    keepalive 64;
    keepalive_timeout 60s;
    keepalive_requests 10000;
  }
  upstream frontdoor_gateway {
$gateway_servers
    keepalive 64;
    keepalive_timeout 30s;
    keepalive_requests 10000;
  }

  server {
    listen 127.0.0.1:$FRONTDOOR_PORT backlog=4096;
    location / {
      proxy_pass http://\$frontdoor_upstream;
      proxy_http_version 1.1;
      proxy_set_header Host \$frontdoor_host;
      proxy_set_header Connection "";
      # The upstream's own Server and Date, not ours; Location and Refresh untouched.
      proxy_pass_header Server;
      proxy_pass_header Date;
      proxy_redirect off;
      # Never passed on by nginx itself: its "next upstream" would send a GET, PUT or DELETE
      # again after an error while reading the answer, and in this API those are not
      # harmless (a force=0 GET moved a cursor, a second PUT .../read answers 400). A request
      # a gateway did not take goes to the monolith below, once, and only if no byte of it
      # was sent (deploy/README.md, "The front door").
      proxy_next_upstream off;
      proxy_connect_timeout ${CONNECT_TIMEOUT}ms;
      # Longer than the monolith's own 60 s, so its 504 reaches the client, not a retry of ours.
      proxy_read_timeout 90s;
      proxy_send_timeout 90s;
      # Only errors nginx makes itself (an upstream's own 502 or 504 passes through as it is).
      error_page 502 = @gateway_refused_502;
      error_page 504 = @gateway_refused_504;
    }
$(fallback_location 502)
$(fallback_location 504)
  }
}
CONF
}

map_rooms() { local n; n=$(grep -c '^"' "$ROOM_MAP" 2>/dev/null) || true; echo "${n:-0}"; }

answers() {  # a full round trip through the front door: the monolith's 401 for an unknown token
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' -H 'X-ChatWorkToken: readiness-probe' \
    "http://127.0.0.1:$FRONTDOOR_PORT/v2/me") && [[ "$code" == 401 ]]
}

test_config() {  # nginx -t on the config as it is on disk; prints nginx's reason on failure
  nginx -t -q -c "$1" >"$DIR/logs/nginx-test.log" 2>&1 || { cat "$DIR/logs/nginx-test.log" >&2; return 1; }
}

start() {
  command -v nginx >/dev/null || die "nginx missing: run deploy/install-system.sh"
  mkdir -p "$DIR/logs" "$DIR/tmp"
  [[ -f "$ROOM_MAP" ]] || : >"$ROOM_MAP"
  if pid_alive "$PID" && answers; then
    if [[ "$(render_config)" != "$(cat "$CONF")" ]]; then
      log "warning: the running front door has other settings; deploy/frontdoor.sh stop && deploy/frontdoor.sh start applies them"
    fi
    log "front door already answering on http://127.0.0.1:$FRONTDOOR_PORT ($(map_rooms) rooms in the map)"
    return
  fi
  stop_frontdoor
  require_free_port "$FRONTDOOR_PORT" "the front door (nginx)"
  chown www-data:www-data "$DIR/tmp"
  render_config >"$CONF"
  if ! test_config "$CONF"; then
    # A room map nginx refuses must not keep the front door down: start with an empty one
    # (everything to the monolith, as with the kill switch) and keep the refused file.
    local rejected
    rejected="$ROOM_MAP.rejected-$(date +%Y%m%dT%H%M%S)"
    mv "$ROOM_MAP" "$rejected" && : >"$ROOM_MAP"
    test_config "$CONF" || { mv "$rejected" "$ROOM_MAP"; die "nginx configuration rejected ($CONF)"; }
    log "warning: the room map was refused (kept as $rejected); starting with an empty map: every request goes to the monolith until the gateway publishes again"
  fi
  log "starting the front door on 127.0.0.1:$FRONTDOOR_PORT: gateway ${GATEWAY_PORTS}, monolith $MONOLITH_PORT, $(map_rooms) rooms in the map"
  nginx -c "$CONF" || die "nginx did not start; see $DIR/logs/error.log"
  wait_until 10 "$DIR/logs/error.log" "the front door (answering with the monolith's 401 on /v2/me)" answers
  log "front door ready on http://127.0.0.1:$FRONTDOOR_PORT"
}

# A graceful reload: the new room map (or configuration) is checked first; a file nginx would
# refuse is reported and the running configuration stays in place.
reload() {
  pid_alive "$PID" || die "the front door is not running (deploy/frontdoor.sh start)"
  test_config "$CONF" || die "room map or configuration rejected, nothing reloaded; the front door goes on with the map it has ($ROOM_MAP)"
  kill -HUP "$(cat "$PID")"
  log "front door reloading: $(map_rooms) rooms in the map"
}

# The kill switch that needs no gateway: an empty room map, reloaded. For when the gateway
# itself is sick (its admin API, which holds the kill switch, answers from the same process).
# Every room then goes straight to the monolith until the gateway publishes the map again (its
# next phase change, or its restart); the control store's kill switch keeps it empty after.
bypass() {
  pid_alive "$PID" || die "the front door is not running (deploy/frontdoor.sh start)"
  local tmp="$ROOM_MAP.bypass.tmp"
  printf '# Emptied by deploy/frontdoor.sh bypass at %s: every room goes to the monolith.\n' "$(date -u +%FT%TZ)" >"$tmp"
  mv -f "$tmp" "$ROOM_MAP"
  reload
  log "front door bypassing the gateway: every request goes straight to the monolith"
}

# A master that has exited but is not reaped yet (a zombie) counts as stopped.
running() { kill -0 "$1" 2>/dev/null && [[ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]]; }

# Graceful: requests in flight are answered; then the same fallback as every other script.
stop_frontdoor() {
  local pid
  pid=$(cat "$PID" 2>/dev/null) || pid=""
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -QUIT "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do running "$pid" || break; sleep 0.1; done
    running "$pid" || log "front door stopped"
  fi
  stop_pidfile "$PID" "front door (nginx)"
}

case "${1:-}" in
  start) start ;;
  stop) stop_frontdoor ;;
  reload) reload ;;
  bypass) bypass ;;
  status)
    if pid_alive "$PID"; then
      rooms=$(map_rooms)
      echo "frontdoor up    nginx pid $(cat "$PID")  http://127.0.0.1:$FRONTDOOR_PORT  gateway ${GATEWAY_PORTS} (backup: monolith $MONOLITH_PORT)  $rooms rooms in the map$( (( rooms == 0 )) && echo ' (all to the monolith)')  logs $DIR/logs"
    else echo "frontdoor down"; fi ;;
  *) die "usage: $0 start|stop|status|reload|bypass" ;;
esac
