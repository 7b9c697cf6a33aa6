#!/usr/bin/env bash
# MariaDB from Debian's package, run as the project's own instance (its own datadir, socket and
# port under the state dir), with row-based binary logging on: a later issue reads the binlog.
# Usage: mariadb.sh start | stop | status | sql [args...]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DB_NAME="${MIG_DB_NAME:-chat}"
DB_USER="${MIG_DB_USER:-chat}"
DB_PASSWORD="${MIG_DB_PASSWORD:-chat}"
# The gateway's control store (phases of rooms): a database of its own on this server.
CONTROL_DB_NAME="${MIG_CONTROL_DB_NAME:-migration_control}"
[[ "$DB_NAME" =~ ^[A-Za-z0-9_]+$ ]] || die "MIG_DB_NAME='$DB_NAME' must be letters, digits and _"
[[ "$CONTROL_DB_NAME" =~ ^[A-Za-z0-9_]+$ ]] || die "MIG_CONTROL_DB_NAME='$CONTROL_DB_NAME' must be letters, digits and _"
[[ "$CONTROL_DB_NAME" != "$DB_NAME" ]] || die "MIG_CONTROL_DB_NAME must not be the monolith's database ($DB_NAME)"
[[ "$DB_USER" =~ ^[A-Za-z0-9_]+$ ]] || die "MIG_DB_USER='$DB_USER' must be letters, digits and _"
[[ "$DB_PASSWORD" != *"'"* && -n "$DB_PASSWORD" ]] || die "MIG_DB_PASSWORD must be non-empty and hold no quote"

DIR="$STATE_DIR/mariadb"
DATA="$DIR/data"
SOCK="$DIR/mysqld.sock"
PIDF="$DIR/mysqld.pid"
LOGF="$DIR/mysqld.log"
CNF="$DIR/my.cnf"

root_sql() { mariadb --defaults-file="$CNF" --protocol=socket -uroot "$@"; }

write_config() {
  mkdir -p "$DIR/binlog"
  cat > "$CNF" <<CNF
[client]
socket = $SOCK
default-character-set = utf8mb4

[mariadbd]
user = mysql
datadir = $DATA
socket = $SOCK
pid-file = $PIDF
log-error = $LOGF
bind-address = 127.0.0.1
port = $MARIADB_PORT
skip-name-resolve
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
# The legacy app was written for this mode: zero dates are accepted (old rows hold them).
sql_mode = STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION
# Row-based binlog with full images and column names: the capture pipeline's binlog source
# (chat-binlog-source) reads it and refuses to start without these three.
server_id = 1
log_bin = $DIR/binlog/mariadb-bin
binlog_format = ROW
binlog_row_image = FULL
binlog_row_metadata = FULL
binlog_expire_logs_seconds = 604800
innodb_buffer_pool_size = 384M
innodb_log_file_size = 256M
max_allowed_packet = 64M
max_connections = 300
local_infile = ON
CNF
}

start() {
  if pid_alive "$PIDF" && root_sql -e 'SELECT 1' >/dev/null 2>&1; then
    log "mariadb already running on 127.0.0.1:$MARIADB_PORT"
  else
    command -v mariadbd >/dev/null || die "mariadbd not found: run deploy/install-system.sh"
    require_free_port "$MARIADB_PORT" mariadb
    write_config
    chown -R mysql:mysql "$DIR"
    if [[ ! -d "$DATA/mysql" ]]; then
      log "initialising mariadb datadir $DATA"
      mariadb-install-db --defaults-file="$CNF" --auth-root-authentication-method=socket \
        >"$DIR/install-db.log" 2>&1 || { tail -n 20 "$DIR/install-db.log" >&2; die "mariadb-install-db failed (log: $DIR/install-db.log)"; }
      chown -R mysql:mysql "$DIR"
    fi
    log "starting mariadb on 127.0.0.1:$MARIADB_PORT"
    # --defaults-file is read by mariadbd itself; started in its own session so it outlives us.
    setsid mariadbd --defaults-file="$CNF" >>"$LOGF" 2>&1 < /dev/null &
    wait_until 60 "$LOGF" "mariadb" root_sql -e 'SELECT 1'
  fi
  root_sql <<SQL
CREATE DATABASE IF NOT EXISTS \`$DB_NAME\` CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
GRANT ALL ON \`$DB_NAME\`.* TO '$DB_USER'@'127.0.0.1', '$DB_USER'@'localhost';
-- scratch databases of the tests (chat_test_...), so a test run never touches the demo data
GRANT ALL ON \`${DB_NAME}\\_test\\_%\`.* TO '$DB_USER'@'127.0.0.1', '$DB_USER'@'localhost';
-- the gateway's control store, and the tests' scratch copies of it (migration_control_test_...)
CREATE DATABASE IF NOT EXISTS \`$CONTROL_DB_NAME\` CHARACTER SET utf8mb4;
GRANT ALL ON \`$CONTROL_DB_NAME\`.* TO '$DB_USER'@'127.0.0.1', '$DB_USER'@'localhost';
GRANT ALL ON \`${CONTROL_DB_NAME}\\_test\\_%\`.* TO '$DB_USER'@'127.0.0.1', '$DB_USER'@'localhost';
-- the binlog hint source reads the replication stream as this user
GRANT REPLICATION SLAVE, REPLICATION CLIENT, RELOAD ON *.* TO '$DB_USER'@'127.0.0.1', '$DB_USER'@'localhost';
SQL
  log "mariadb ready: databases $DB_NAME and $CONTROL_DB_NAME, user $DB_USER on 127.0.0.1:$MARIADB_PORT"
}

case "${1:-}" in
  start) start ;;
  stop) stop_pidfile "$PIDF" mariadb ;;
  status)
    if pid_alive "$PIDF"; then echo "mariadb   up    pid $(cat "$PIDF")  127.0.0.1:$MARIADB_PORT  log $LOGF"
    else echo "mariadb   down"; fi ;;
  sql) shift; root_sql "$@" ;;
  *) die "usage: $0 start|stop|status|sql [args]" ;;
esac
