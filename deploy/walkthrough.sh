#!/usr/bin/env bash
# Prints where each part of the stack answers and a short walk-through to try with curl.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SEED="${1:-42}"
TOKEN=$("$VENV_DIR/bin/python" -c "from legacy_adapters.service.seeding.world import token_for; print(token_for($SEED, 1))")
URL="http://127.0.0.1:$MONOLITH_PORT"
cat <<TEXT

The stack is up:
  monolith (PHP 8.2 + nginx)  $URL/v2        (rate-limited twin: http://127.0.0.1:${MIG_MONOLITH_LIMITED_PORT:-8081})
  MariaDB                     127.0.0.1:$MARIADB_PORT  database ${MIG_DB_NAME:-chat}, user ${MIG_DB_USER:-chat}  (row binlog on)
  Kafka (KRaft, 1 node)       127.0.0.1:$KAFKA_PORT
  HBase Thrift (happybase)    127.0.0.1:$HBASE_THRIFT_PORT
  state and logs              $STATE_DIR

Try it (account 1 of the seeded data set; room 1 is one of its rooms):
  T='X-ChatWorkToken: $TOKEN'
  curl -s -H "\$T" $URL/v2/me
  curl -s -H "\$T" $URL/v2/rooms | head -c 600; echo                           # unread_num, mention_num
  curl -s -H "\$T" '$URL/v2/rooms/1/messages?force=1' | head -c 800; echo      # the latest 100, no side effect
  curl -s -H "\$T" -X PUT $URL/v2/rooms/1/messages/read; echo                  # counts after; 400 if already read
  curl -s -i -H "\$T" $URL/v2/rooms/1/messages | head -n 1                      # force=0: what you have not fetched
  curl -s -i -H "\$T" $URL/v2/rooms/1/messages | head -n 1                      # again: 204, nothing new
  curl -s -H "\$T" -d 'body=[To:1] こんにちは 👋' $URL/v2/rooms/1/messages; echo  # {"message_id": "..."}
  curl -s -H "\$T" $URL/v2/rooms/1/messages; echo                              # force=0: just the new one
  curl -s $URL/v2/me; echo                                                     # no token: 401

Stop everything with 'make down'; 'make status' tells what runs.
TEXT
