<?php
// The seven message endpoints of ChatWork API v2: the part of the monolith that migrates.
declare(strict_types=1);

const PAGE_SIZE = 100;

/**
 * GET /rooms/{id}/messages. force=1: the latest 100, no side effect. force=0: what this account
 * has not fetched yet (the next 100 after its fetch cursor, oldest first; the latest 100 when it
 * never fetched), then the cursor moves to the last message returned; 204 when nothing is new.
 */
function list_messages(array $me, string $roomId): void
{
    $force = flag_param('force', false);
    require_member($roomId, $me['account_id']);
    if ($force) {
        send_json(200, array_map('message_object', latest_messages($roomId, PAGE_SIZE)));
        return;
    }
    $pdo = db();
    $pdo->beginTransaction();
    try {
        $cursor = lock_cursor($roomId, $me['account_id']);
        $fetched = (string) $cursor['last_fetched_message_id'];
        $rows = $fetched === '0'
            ? latest_messages($roomId, PAGE_SIZE)
            : messages_after($roomId, $fetched, PAGE_SIZE);
        if ($rows !== []) {
            query(
                'UPDATE room_cursors SET last_fetched_message_id = ? WHERE room_id = ? AND account_id = ?',
                [end($rows)['message_id'], $roomId, $me['account_id']]
            );
        }
        $pdo->commit();
    } catch (Throwable $e) {
        $pdo->rollBack();
        throw $e;
    }
    if ($rows === []) {
        send_no_content();
        return;
    }
    send_json(200, array_map('message_object', $rows));
}

/** POST /rooms/{id}/messages: the monolith decides the id and the time. */
function post_message(array $me, string $roomId): void
{
    $body = body_param();
    $selfUnread = flag_param('self_unread', false);
    $role = require_member($roomId, $me['account_id']);
    if ($role === 'readonly') {
        throw new HttpError(403, 'You have no permission to post in this room');
    }
    $pdo = db();
    $pdo->beginTransaction();
    try {
        $now = time();
        query(
            'INSERT INTO messages (room_id, account_id, body, send_time, update_time, created_at)
             VALUES (?, ?, ?, ?, 0, FROM_UNIXTIME(?))',
            [$roomId, $me['account_id'], $body, $now, $now]
        );
        $messageId = $pdo->lastInsertId();
        if (!$selfUnread) {
            query(
                'INSERT INTO room_cursors (room_id, account_id, last_read_message_id) VALUES (?, ?, ?)
                 ON DUPLICATE KEY UPDATE last_read_message_id = GREATEST(last_read_message_id, VALUES(last_read_message_id))',
                [$roomId, $me['account_id'], $messageId]
            );
        }
        query('UPDATE rooms SET last_update_time = ? WHERE room_id = ?', [$now, $roomId]);
        $pdo->commit();
    } catch (Throwable $e) {
        $pdo->rollBack();
        throw $e;
    }
    send_json(200, ['message_id' => (string) $messageId]);
}

function get_message(array $me, string $roomId, string $messageId): void
{
    require_member($roomId, $me['account_id']);
    $row = find_message($roomId, $messageId);
    if ($row === null) {
        throw new HttpError(404, 'Message not found');
    }
    send_json(200, message_object($row));
}

/** A live message of the room written by this account, or the contract's 404 / 403. */
function own_message(array $me, string $roomId, string $messageId): array
{
    require_member($roomId, $me['account_id']);
    $row = find_message($roomId, $messageId);
    if ($row === null) {
        throw new HttpError(404, 'Message not found');
    }
    if ((int) $row['account_id'] !== $me['account_id']) {
        throw new HttpError(403, 'You can only change your own messages');
    }
    return $row;
}

/** PUT /rooms/{id}/messages/{mid}. update_time has one-second resolution, as it always had. */
function edit_message(array $me, string $roomId, string $messageId): void
{
    $body = body_param();
    own_message($me, $roomId, $messageId);
    query(
        'UPDATE messages SET body = ?, update_time = ? WHERE room_id = ? AND message_id = ?',
        [$body, time(), $roomId, $messageId]
    );
    send_json(200, ['message_id' => $messageId]);
}

/** DELETE /rooms/{id}/messages/{mid}: a soft delete, as the monolith has always done. */
function delete_message(array $me, string $roomId, string $messageId): void
{
    own_message($me, $roomId, $messageId);
    query(
        'UPDATE messages SET deleted = 1, update_time = ? WHERE room_id = ? AND message_id = ?',
        [time(), $roomId, $messageId]
    );
    send_json(200, ['message_id' => $messageId]);
}

/**
 * PUT /rooms/{id}/messages/read: reads up to message_id (default: the latest message).
 * Already read up to there: 400. Deleted messages are invisible here as on GET: the default is
 * the latest live message, and a deleted message_id is a 404.
 */
function mark_read(array $me, string $roomId): void
{
    $messageId = message_id_param(false);
    require_member($roomId, $me['account_id']);
    if ($messageId === null) {
        $messageId = latest_live_message_id($roomId);
    } elseif (!live_message_exists($roomId, $messageId)) {
        throw new HttpError(404, 'Message not found');
    }
    $pdo = db();
    $pdo->beginTransaction();
    try {
        $cursor = lock_cursor($roomId, $me['account_id']);
        if (bccomp_ids((string) $cursor['last_read_message_id'], $messageId) >= 0) {
            $pdo->rollBack();
            throw new HttpError(400, 'The messages are already read');
        }
        query(
            'UPDATE room_cursors SET last_read_message_id = ? WHERE room_id = ? AND account_id = ?',
            [$messageId, $roomId, $me['account_id']]
        );
        $pdo->commit();
    } catch (HttpError $e) {
        throw $e;
    } catch (Throwable $e) {
        $pdo->rollBack();
        throw $e;
    }
    send_json(200, unread_counts($roomId, $me['account_id']));
}

/** PUT /rooms/{id}/messages/unread: message_id and everything after it become unread. */
function mark_unread(array $me, string $roomId): void
{
    $messageId = message_id_param(true);
    require_member($roomId, $me['account_id']);
    if (!live_message_exists($roomId, $messageId)) {
        throw new HttpError(404, 'Message not found');
    }
    $previous = (string) query(
        'SELECT COALESCE(MAX(message_id), 0) FROM messages WHERE room_id = ? AND message_id < ?',
        [$roomId, $messageId]
    )->fetchColumn();
    query(
        'INSERT INTO room_cursors (room_id, account_id, last_read_message_id) VALUES (?, ?, ?)
         ON DUPLICATE KEY UPDATE last_read_message_id = VALUES(last_read_message_id)',
        [$roomId, $me['account_id'], $previous]
    );
    send_json(200, unread_counts($roomId, $me['account_id']));
}

/** Compares two digit-string ids numerically (they may not fit a PHP float exactly). */
function bccomp_ids(string $a, string $b): int
{
    return strlen($a) === strlen($b) ? strcmp($a, $b) <=> 0 : strlen($a) <=> strlen($b);
}
