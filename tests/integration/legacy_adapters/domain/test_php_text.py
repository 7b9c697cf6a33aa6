"""Our rendering of invalid UTF-8 is PHP's, byte for byte: checked against the real PHP."""

from __future__ import annotations

import json
import random
import shutil
import subprocess

import pytest

from legacy_adapters.domain.php_text import php_json_text

PHP_RENDER = (
    'foreach (explode("\\n", stream_get_contents(STDIN)) as $h) { echo json_encode(hex2bin($h),'
    ' JSON_INVALID_UTF8_SUBSTITUTE|JSON_UNESCAPED_UNICODE|JSON_UNESCAPED_SLASHES), "\\n"; }'
)
ALPHABET = [bytes([b]) for b in (0x41, 0x80, 0x81, 0x82, 0x90, 0x98, 0x9F, 0xA0, 0xA9, 0xBF,
                                 0xC0, 0xC2, 0xC3, 0xE0, 0xE3, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF)]  # fmt: skip


def php_renders(cases: list[bytes]) -> list[str]:
    php = shutil.which("php")
    if php is None:
        pytest.fail("the php CLI is missing: run deploy/install-system.sh (make up)", pytrace=False)
    blob = "\n".join(case.hex() for case in cases).encode()
    lines = subprocess.run(
        [php, "-r", PHP_RENDER], input=blob, capture_output=True, check=True
    ).stdout
    return [json.loads(line) for line in lines.decode().splitlines()]


def test_invalid_bytes_render_as_php_renders_them() -> None:
    rng = random.Random(20261123)
    cases = [
        b"\xe3\x81", b"\xff", b"\xe3\x81A", b"\xf0\x9f\x98", b"\xed\xa0\x80", b"\xc0\xaf",
        b"\xf4\x90\x80\x80", b"\xe0\x80\x80", b"\xf0\x80\x80\x80", "日本語".encode("shift_jis"),
        "途中で切れた".encode()[:-1], b"ok \xf0\x9f\x98\x80 then \xe3",
    ]  # fmt: skip
    cases += [
        b"".join(rng.choice(ALPHABET) for _ in range(rng.randrange(1, 9))) for _ in range(5000)
    ]
    expected = php_renders(cases)
    mismatches = [
        (c.hex(), e, php_json_text(c)[0])
        for c, e in zip(cases, expected, strict=True)
        if php_json_text(c)[0] != e
    ]
    assert mismatches == []


def test_valid_text_is_faithful_and_invalid_is_reported() -> None:
    assert php_json_text("絵文字😀".encode()) == ("絵文字😀", True)
    assert php_json_text(b"\xe3\x81") == ("\ufffd", False)
