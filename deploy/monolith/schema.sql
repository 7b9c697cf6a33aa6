-- The monolith's schema, with the weight of history. Applied idempotently by deploy/web.sh.
-- Every quirk below is on purpose; deploy/monolith/README.md tells its story.

CREATE TABLE IF NOT EXISTS accounts (
  account_id        INT UNSIGNED NOT NULL AUTO_INCREMENT,
  name              VARCHAR(255) CHARACTER SET utf8mb4 NOT NULL,
  chatwork_id       VARCHAR(64) NULL,
  avatar_image_url  VARCHAR(255) NULL,                -- NULL on accounts older than avatars
  organization_name VARCHAR(255) CHARACTER SET utf8mb4 NOT NULL DEFAULT '',
  my_room_id        INT UNSIGNED NULL,
  PRIMARY KEY (account_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS api_tokens (
  token       CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  account_id  INT UNSIGNED NOT NULL,
  created_at  DATETIME NULL,
  PRIMARY KEY (token),
  KEY ix_api_tokens_account (account_id)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS rooms (
  room_id          INT UNSIGNED NOT NULL AUTO_INCREMENT,
  name             VARCHAR(255) CHARACTER SET utf8mb4 NOT NULL,
  type             ENUM('my','direct','group') NOT NULL DEFAULT 'group',
  icon_path        VARCHAR(255) NULL,
  last_update_time INT UNSIGNED NOT NULL DEFAULT 0,
  PRIMARY KEY (room_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS room_members (
  room_id     INT UNSIGNED NOT NULL,
  account_id  INT UNSIGNED NOT NULL,
  role        ENUM('admin','member','readonly') NOT NULL DEFAULT 'member',
  PRIMARY KEY (room_id, account_id),
  KEY ix_room_members_account (account_id)
) ENGINE=InnoDB;

-- Message ids: 32-bit and consecutive until 2019, then 64-bit (18 digits) and only increasing.
-- The body lives in one of three columns, by era (the app reads COALESCE(body, body_v1, body_raw)):
--   body_raw  2011-2012 rows imported from the "Talk" product: bytes as they came, some not UTF-8
--   body_v1   2012-2016 rows: the original column, 3-byte utf8 (emoji were stored as '?')
--   body      since 2016: utf8mb4; every write and edit goes here
-- Times: send_time/update_time are unix seconds since 2016; older rows have send_time NULL and
-- only created_at (JST wall time, '0000-00-00 00:00:00' on rows of a 2013 import bug), and
-- update_time NULL where newer rows have 0.
-- deleted=1 is a soft delete; purged messages are gone from the table (hard delete).
CREATE TABLE IF NOT EXISTS messages (
  message_id   BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  room_id      INT UNSIGNED NOT NULL,
  account_id   INT UNSIGNED NOT NULL,
  body         MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
  body_v1      TEXT CHARACTER SET utf8mb3 COLLATE utf8mb3_bin NULL,
  body_raw     BLOB NULL,
  send_time    INT UNSIGNED NULL,
  update_time  INT UNSIGNED NULL,
  created_at   DATETIME NULL,
  deleted      TINYINT(1) NOT NULL DEFAULT 0,
  PRIMARY KEY (message_id),
  KEY ix_messages_room (room_id, message_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Per account and room: what was read (read/unread, counts) and what was fetched (force=0).
CREATE TABLE IF NOT EXISTS room_cursors (
  room_id                  INT UNSIGNED NOT NULL,
  account_id               INT UNSIGNED NOT NULL,
  last_read_message_id     BIGINT UNSIGNED NOT NULL DEFAULT 0,
  last_fetched_message_id  BIGINT UNSIGNED NOT NULL DEFAULT 0,
  updated_at               TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (room_id, account_id)
) ENGINE=InnoDB;

-- Counters of the optional rate limiter (off unless CHAT_RATE_LIMIT=on reaches PHP).
CREATE TABLE IF NOT EXISTS rate_limits (
  bucket       VARCHAR(96) CHARACTER SET ascii NOT NULL,
  window_start INT UNSIGNED NOT NULL,
  hits         INT UNSIGNED NOT NULL,
  PRIMARY KEY (bucket, window_start)
) ENGINE=InnoDB;
