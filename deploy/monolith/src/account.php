<?php
// Endpoints that stay on the monolith for good: /me and /rooms.
declare(strict_types=1);

function get_me(array $me): void
{
    send_json(200, [
        'account_id' => (int) $me['account_id'],
        'room_id' => (int) ($me['my_room_id'] ?? 0),
        'name' => $me['name'],
        'chatwork_id' => $me['chatwork_id'] ?? '',
        'organization_id' => 0,
        'organization_name' => $me['organization_name'],
        'department' => '',
        'title' => '',
        'url' => '',
        'introduction' => '',
        'mail' => '',
        'tel_organization' => '',
        'tel_extension' => '',
        'tel_mobile' => '',
        'skype' => '',
        'facebook' => '',
        'twitter' => '',
        'avatar_image_url' => $me['avatar_image_url'] ?? DEFAULT_AVATAR,
        'login_mail' => '',
    ]);
}

function list_rooms(array $me): void
{
    $rooms = query(
        'SELECT r.room_id, r.name, r.type, r.icon_path, r.last_update_time, m.role,
                (SELECT COUNT(*) FROM messages x WHERE x.room_id = r.room_id AND x.deleted = 0) AS message_num
           FROM room_members m JOIN rooms r ON r.room_id = m.room_id
          WHERE m.account_id = ? ORDER BY r.room_id',
        [$me['account_id']]
    )->fetchAll();
    $answer = [];
    foreach ($rooms as $room) {
        $counts = unread_counts((string) $room['room_id'], (int) $me['account_id']);
        $answer[] = [
            'room_id' => (int) $room['room_id'],
            'name' => $room['name'],
            'type' => $room['type'],
            'role' => $room['role'],
            'sticky' => false,
            'unread_num' => $counts['unread_num'],
            'mention_num' => $counts['mention_num'],
            'mytask_num' => 0,
            'message_num' => (int) $room['message_num'],
            'file_num' => 0,
            'task_num' => 0,
            'icon_path' => $room['icon_path'] ?? '',
            'last_update_time' => (int) $room['last_update_time'],
        ];
    }
    send_json(200, $answer);
}
