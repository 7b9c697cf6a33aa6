<?php
// The monolith stand-in's front controller: ChatWork API v2 for messages, /me and /rooms.
declare(strict_types=1);

require __DIR__ . '/../src/http.php';
require __DIR__ . '/../src/store.php';
require __DIR__ . '/../src/messages.php';
require __DIR__ . '/../src/account.php';

/** Route table: [method, path pattern, handler]. Ids are digit strings, never floats. */
function route(string $method, string $path, array $me): void
{
    $room = '(?P<room>[1-9][0-9]{0,9})';
    $message = '(?P<message>[1-9][0-9]{0,18})';
    $routes = [
        ['GET', '#^/v2/me$#', fn (array $m) => get_me($me)],
        ['GET', '#^/v2/rooms$#', fn (array $m) => list_rooms($me)],
        ['GET', "#^/v2/rooms/$room/messages$#", fn (array $m) => list_messages($me, $m['room'])],
        ['POST', "#^/v2/rooms/$room/messages$#", fn (array $m) => post_message($me, $m['room'])],
        ['PUT', "#^/v2/rooms/$room/messages/read$#", fn (array $m) => mark_read($me, $m['room'])],
        ['PUT', "#^/v2/rooms/$room/messages/unread$#", fn (array $m) => mark_unread($me, $m['room'])],
        ['GET', "#^/v2/rooms/$room/messages/$message$#", fn (array $m) => get_message($me, $m['room'], $m['message'])],
        ['PUT', "#^/v2/rooms/$room/messages/$message$#", fn (array $m) => edit_message($me, $m['room'], $m['message'])],
        ['DELETE', "#^/v2/rooms/$room/messages/$message$#", fn (array $m) => delete_message($me, $m['room'], $m['message'])],
    ];
    $pathMatched = false;
    foreach ($routes as [$verb, $pattern, $handler]) {
        if (preg_match($pattern, $path, $m) === 1) {
            $pathMatched = true;
            if ($verb === $method) {
                $handler($m);
                return;
            }
        }
    }
    throw $pathMatched ? new HttpError(405, 'Method not allowed') : new HttpError(404, 'Resource not found');
}

/** The public API's limits, only when the web server passes CHAT_RATE_LIMIT=on. */
function apply_rate_limits(array $me, string $method, string $path): void
{
    if (($_SERVER['CHAT_RATE_LIMIT'] ?? getenv('CHAT_RATE_LIMIT')) !== 'on') {
        return;
    }
    [$limit, $remaining, $reset, $exceeded] = rate_limit('token:' . $me['token'], 300, 300);
    header("x-ratelimit-limit: $limit");
    header("x-ratelimit-remaining: $remaining");
    header("x-ratelimit-reset: $reset");
    if ($exceeded) {
        throw new HttpError(429, 'Rate limit exceeded');
    }
    if ($method === 'POST' && preg_match('#^/v2/rooms/([0-9]+)/messages$#', $path, $m) === 1) {
        if (rate_limit('room-post:' . $m[1], 10, 10)[3]) {
            throw new HttpError(429, 'Too many messages posted to this room; retry in a few seconds');
        }
    }
}

$method = $_SERVER['REQUEST_METHOD'];
$path = parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH) ?: '/';
try {
    if (!str_starts_with($path, '/v2/')) {
        throw new HttpError(404, 'Resource not found');
    }
    $me = authenticate();
    apply_rate_limits($me, $method, $path);
    route($method, $path, $me);
} catch (HttpError $e) {
    send_error($e->status, $e->getMessage());
} catch (Throwable $e) {
    error_log('chat monolith: ' . get_class($e) . ': ' . $e->getMessage());
    send_error(500, 'Internal server error');
}
