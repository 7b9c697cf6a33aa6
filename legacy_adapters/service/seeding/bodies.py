"""Message bodies that look like a Japanese B2B chat: text, emoji and ChatWork notation.

Pure and deterministic: every choice comes from the `random.Random` passed in, so a seed gives
the same bodies on every machine.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

PHRASES_JA: tuple[str, ...] = (
    "お疲れ様です。",
    "承知しました！",
    "資料を共有します。ご確認ください。",
    "本日の定例は15時からです。",
    "見積書の件、先方から返信がありました。",
    "明日の打ち合わせ、10分ほど遅れます🙇",
    "リリース作業を開始します。",
    "ご対応ありがとうございます。",
    "議事録をまとめました。",
    "こちらで確認して折り返します。",
    "障害の原因はキャッシュの設定でした。",
    "来週の予定を調整させてください。",
    "了解です👍",
    "対応完了しました✅",
    "お客様から問い合わせが来ています。",
    "テスト環境にデプロイしました。",
    "すみません、少し席を外します。",
    "よろしくお願いいたします。",
    "契約書のドラフトを送付しました📎",
    "経費精算の締め切りは今週金曜です。",
)
PHRASES_EN: tuple[str, ...] = (
    "Thanks, looks good to me.",
    "Can we move the call to 4pm?",
    "Deployed to staging, please verify.",
    "I'll take a look after lunch.",
    "The invoice was sent this morning.",
)
EMOJI: tuple[str, ...] = ("😀", "🙏", "👍", "🎉", "✨", "🔥", "💡", "✅", "🙇", "😅", "🍣", "📎")
SENTENCE_COUNTS = (1, 1, 1, 2, 2, 3, 5)
TITLES: tuple[str, ...] = ("お知らせ", "障害報告", "議事録", "リリースノート", "週次レポート")


class BodyWriter:
    """Writes one body at a time; bodies may name other members (mentions and replies)."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def plain(self, sentences: int | None = None) -> str:
        # Hot path of the seeder: index with random() instead of choice() (3x fewer calls).
        draw = self._rng.random
        count = sentences if sentences is not None else SENTENCE_COUNTS[int(draw() * 7)]
        parts = []
        for _ in range(count):
            if draw() < 0.85:
                phrase = PHRASES_JA[int(draw() * len(PHRASES_JA))]
            else:
                phrase = PHRASES_EN[int(draw() * len(PHRASES_EN))]
            if draw() < 0.15:
                phrase += EMOJI[int(draw() * len(EMOJI))]
            parts.append(phrase)
        return "".join(parts) if draw() < 0.7 else "\n".join(parts)

    def body(
        self,
        *,
        room_id: int,
        members: Sequence[int],
        names: Sequence[str],
        recent_message_id: int,
        now: int,
    ) -> str:
        """A body with the notation real clients produce, in realistic proportions.

        `names[i]` is the display name of `members[i]`; `recent_message_id` is an earlier
        message of the room (0 when there is none) for replies and quotes.
        """
        rng = self._rng
        roll = rng.random()
        if roll < 0.60:
            return self.plain()
        pick = rng.randrange(len(members))
        aid, name = members[pick], names[pick]
        if roll < 0.78:
            return f"[To:{aid}]{name}さん\n{self.plain()}"
        if roll < 0.86 and recent_message_id:
            return f"[rp aid={aid} to={room_id}-{recent_message_id}]{name}さん\n{self.plain(1)}"
        if roll < 0.92:
            quoted = self.plain(1)
            return f"[qt][qtmeta aid={aid} time={now - rng.randrange(1, 86_400)}]{quoted}[/qt]\n{self.plain(1)}"
        if roll < 0.995:
            title = rng.choice(TITLES)
            return f"[info][title]{title}[/title]{self.plain(3)}[/info]"
        # The rare long post: a pasted log or a long report.
        return "\n".join(self.plain(4) for _ in range(rng.randrange(10, 60)))

    def edited(self, original: str) -> str:
        """The body after an edit: a fixed typo or an added line."""
        rng = self._rng
        if rng.random() < 0.5:
            return original + "\n" + self.plain(1)
        return original.replace("。", "！", 1) if "。" in original else original + "（追記）"
