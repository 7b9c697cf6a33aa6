<?php
// Everything the app asks of MariaDB. Every statement is prepared with bound parameters.
declare(strict_types=1);

function db(): PDO
{
    static $pdo = null;
    if ($pdo === null) {
        $dsn = sprintf(
            'mysql:host=%s;port=%s;dbname=%s;charset=utf8mb4',
            getenv('CHAT_DB_HOST') ?: '127.0.0.1',
            getenv('CHAT_DB_PORT') ?: '3306',
            getenv('CHAT_DB_NAME') ?: 'chat'
        );
        $pdo = new PDO($dsn, getenv('CHAT_DB_USER') ?: 'chat', getenv('CHAT_DB_PASSWORD') ?: '', [
            PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
            PDO::ATTR_DEFAULT_FETCH_MODE => PDO::FETCH_ASSOC,
            PDO::ATTR_PERSISTENT => true,
            PDO::ATTR_EMULATE_PREPARES => false,
            // created_at holds JST wall time: the legacy app has always read it in +09:00.
            PDO::MYSQL_ATTR_INIT_COMMAND => "SET time_zone = '+09:00'",
        ]);
    }
    return $pdo;
}

function query(string $sql, array $args = []): PDOStatement
{
    $stmt = db()->prepare($sql);
    $stmt->execute($args);
    return $stmt;
}

/** The account behind the X-ChatWorkToken header, or a 401. */
function authenticate(): array
{
    $token = $_SERVER['HTTP_X_CHATWORKTOKEN'] ?? '';
    // Tokens are printable ASCII (the column is ascii_bin): anything else cannot match, and
    // comparing non-ASCII text with that column is a collation error in MariaDB, not a 401.
    if (preg_match('/^[\x21-\x7E]{1,64}$/D', $token) !== 1) {
        throw new HttpError(401, 'Invalid API token');
    }
    $account = query(
        'SELECT a.account_id, a.name, a.chatwork_id, a.avatar_image_url, a.organization_name, a.my_room_id
           FROM api_tokens t JOIN accounts a ON a.account_id = t.account_id
          WHERE t.token = ?',
        [$token]
    )->fetch();
    if ($account === false) {
        throw new HttpError(401, 'Invalid API token');
    }
    $account['account_id'] = (int) $account['account_id'];
    $account['token'] = $token;
    return $account;
}

/** The account's role in the room: 404 when the room does not exist, 403 when not a member. */
function require_member(string $roomId, int $accountId): string
{
    $row = query(
        'SELECT r.room_id, m.role FROM rooms r
           LEFT JOIN room_members m ON m.room_id = r.room_id AND m.account_id = ?
          WHERE r.room_id = ?',
        [$accountId, $roomId]
    )->fetch();
    if ($row === false) {
        throw new HttpError(404, 'Room not found');
    }
    if ($row['role'] === null) {
        throw new HttpError(403, "You don't have permission to access this room");
    }
    return $row['role'];
}

const DEFAULT_AVATAR = 'https://appdata.chatwork.com/avatar/ico_default_blue.png';

const MESSAGE_COLUMNS = '
    m.message_id, m.account_id, m.body, m.body_v1, m.body_raw, m.send_time, m.update_time,
    CASE WHEN m.created_at IS NULL OR m.created_at = \'0000-00-00 00:00:00\' THEN 0
         ELSE UNIX_TIMESTAMP(m.created_at) END AS created_unix,
    a.name AS account_name, a.avatar_image_url';

/** A message row as the contract's message object (the legacy rendering of every era). */
function message_object(array $row): array
{
    $body = $row['body'] ?? $row['body_v1'] ?? $row['body_raw'] ?? '';
    return [
        'message_id' => (string) $row['message_id'],
        'account' => [
            'account_id' => (int) $row['account_id'],
            'name' => $row['account_name'] ?? '',
            'avatar_image_url' => $row['avatar_image_url'] ?? DEFAULT_AVATAR,
        ],
        'body' => $body,
        'send_time' => (int) ($row['send_time'] ?? $row['created_unix']),
        'update_time' => (int) ($row['update_time'] ?? 0),
    ];
}

function find_message(string $roomId, string $messageId): ?array
{
    $row = query(
        'SELECT ' . MESSAGE_COLUMNS . ' FROM messages m LEFT JOIN accounts a ON a.account_id = m.account_id
          WHERE m.room_id = ? AND m.message_id = ? AND m.deleted = 0',
        [$roomId, $messageId]
    )->fetch();
    return $row === false ? null : $row;
}

/** Whether the room holds this message, not deleted (soft-deleted messages are 404 everywhere). */
function live_message_exists(string $roomId, string $messageId): bool
{
    return query(
        'SELECT 1 FROM messages WHERE room_id = ? AND message_id = ? AND deleted = 0',
        [$roomId, $messageId]
    )->fetch() !== false;
}

/** The id of the room's latest live message, '0' when it has none. */
function latest_live_message_id(string $roomId): string
{
    return (string) query(
        'SELECT COALESCE(MAX(message_id), 0) FROM messages WHERE room_id = ? AND deleted = 0',
        [$roomId]
    )->fetchColumn();
}

/** The latest $limit live messages of a room, oldest first. */
function latest_messages(string $roomId, int $limit): array
{
    $rows = query(
        'SELECT ' . MESSAGE_COLUMNS . ' FROM messages m LEFT JOIN accounts a ON a.account_id = m.account_id
          WHERE m.room_id = ? AND m.deleted = 0 ORDER BY m.message_id DESC LIMIT ' . $limit,
        [$roomId]
    )->fetchAll();
    return array_reverse($rows);
}

/** Up to $limit live messages of a room after $afterId, oldest first. */
function messages_after(string $roomId, string $afterId, int $limit): array
{
    return query(
        'SELECT ' . MESSAGE_COLUMNS . ' FROM messages m LEFT JOIN accounts a ON a.account_id = m.account_id
          WHERE m.room_id = ? AND m.message_id > ? AND m.deleted = 0 ORDER BY m.message_id ASC LIMIT ' . $limit,
        [$roomId, $afterId]
    )->fetchAll();
}

/**
 * The cursor row of an account in a room, locked for the current transaction.
 * The no-op ON DUPLICATE KEY UPDATE takes the row's exclusive lock at once: INSERT IGNORE would
 * take a shared lock on an existing row, and two concurrent fetches of one account that both
 * hold it and then ask for FOR UPDATE deadlock (a 500 for one of them).
 */
function lock_cursor(string $roomId, int $accountId): array
{
    query(
        'INSERT INTO room_cursors (room_id, account_id) VALUES (?, ?)
         ON DUPLICATE KEY UPDATE account_id = account_id',
        [$roomId, $accountId]
    );
    return query(
        'SELECT last_read_message_id, last_fetched_message_id FROM room_cursors
          WHERE room_id = ? AND account_id = ? FOR UPDATE',
        [$roomId, $accountId]
    )->fetch();
}

/** unread_num and mention_num of an account in a room, from its read cursor. */
function unread_counts(string $roomId, int $accountId): array
{
    $row = query(
        "SELECT COUNT(*) AS unread_num,
                COALESCE(SUM(COALESCE(m.body, m.body_v1, CAST(m.body_raw AS CHAR CHARACTER SET binary)) LIKE ?), 0) AS mention_num
           FROM messages m
           LEFT JOIN room_cursors c ON c.room_id = m.room_id AND c.account_id = ?
          WHERE m.room_id = ? AND m.deleted = 0 AND m.message_id > COALESCE(c.last_read_message_id, 0)",
        ['%[To:' . $accountId . ']%', $accountId, $roomId]
    )->fetch();
    return ['unread_num' => (int) $row['unread_num'], 'mention_num' => (int) $row['mention_num']];
}

/**
 * The optional rate limiter of the public API: fixed windows counted in MariaDB.
 * Returns [limit, remaining, reset time, exceeded?].
 */
function rate_limit(string $bucket, int $limit, int $windowSeconds): array
{
    $now = time();
    $windowStart = $now - ($now % $windowSeconds);
    query(
        'INSERT INTO rate_limits (bucket, window_start, hits) VALUES (?, ?, 1)
         ON DUPLICATE KEY UPDATE hits = hits + 1',
        [$bucket, $windowStart]
    );
    $hits = (int) query(
        'SELECT hits FROM rate_limits WHERE bucket = ? AND window_start = ?',
        [$bucket, $windowStart]
    )->fetchColumn();
    return [$limit, max(0, $limit - $hits), $windowStart + $windowSeconds, $hits > $limit];
}
