<?php
// Request parsing and JSON answers, the way the legacy app has always done them.
declare(strict_types=1);

final class HttpError extends Exception
{
    public function __construct(public readonly int $status, string $message)
    {
        parent::__construct($message);
    }
}

/**
 * Parameters from the query string and the body alike, as PHP's $_REQUEST would give them:
 * the body wins over the query. PHP fills $_POST only for POST, so PUT and DELETE bodies are
 * parsed here (clients send them form-encoded).
 */
function request_params(): array
{
    static $params = null;
    if ($params !== null) {
        return $params;
    }
    $params = $_GET;
    if ($_SERVER['REQUEST_METHOD'] === 'POST') {
        $params = array_merge($params, $_POST);
    } else {
        $type = strtolower($_SERVER['CONTENT_TYPE'] ?? '');
        if (!str_starts_with($type, 'multipart/') && !str_contains($type, 'json')) {
            $raw = file_get_contents('php://input');
            if ($raw !== false && $raw !== '') {
                parse_str($raw, $body);
                $params = array_merge($params, $body);
            }
        }
    }
    return $params;
}

/** A parameter as a string, or null when absent. An array where a string belongs is a 400. */
function param(string $name): ?string
{
    $params = request_params();
    if (!array_key_exists($name, $params)) {
        return null;
    }
    if (!is_string($params[$name])) {
        throw new HttpError(400, "Invalid value for parameter '$name'");
    }
    return $params[$name];
}

/** A 0/1 flag: absent means the default; anything but "0" or "1" is a 400. */
function flag_param(string $name, bool $default): bool
{
    $value = param($name);
    if ($value === null || $value === '') {
        return $default;
    }
    if ($value !== '0' && $value !== '1') {
        throw new HttpError(400, "Invalid value for parameter '$name': use 0 or 1");
    }
    return $value === '1';
}

/** The message body rule of the contract: 1..65535 characters. */
function body_param(): string
{
    $body = param('body');
    if ($body === null || $body === '') {
        throw new HttpError(400, "Parameter 'body' is required");
    }
    if (!mb_check_encoding($body, 'UTF-8')) {
        throw new HttpError(400, "Parameter 'body' is not valid UTF-8");
    }
    if (mb_strlen($body, 'UTF-8') > 65535) {
        throw new HttpError(400, "Parameter 'body' is too long (at most 65535 characters)");
    }
    return $body;
}

/** A message id from a parameter: a string of digits that fits BIGINT UNSIGNED. */
function message_id_param(bool $required): ?string
{
    $value = param('message_id');
    if ($value === null || $value === '') {
        if ($required) {
            throw new HttpError(400, "Parameter 'message_id' is required");
        }
        return null;
    }
    if (!is_digit_id($value)) {
        throw new HttpError(400, "Invalid value for parameter 'message_id'");
    }
    return $value;
}

function is_digit_id(string $value): bool
{
    return ctype_digit($value) && strlen($value) <= 19 && $value[0] !== '0';
}

const JSON_FLAGS = JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE;

function send_json(int $status, mixed $payload): void
{
    http_response_code($status);
    header('Content-Type: application/json; charset=utf-8');
    echo json_encode($payload, JSON_FLAGS | JSON_THROW_ON_ERROR);
}

function send_no_content(): void
{
    http_response_code(204);
    // header_remove() alone is not enough: PHP adds default_mimetype (text/html) to any answer
    // without a Content-Type when it sends the headers. A 204 carries no content, so no type.
    ini_set('default_mimetype', '');
    header_remove('Content-Type');
}

function send_error(int $status, string $message): void
{
    send_json($status, ['errors' => [$message]]);
}
