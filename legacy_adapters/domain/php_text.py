"""Text as the monolith shows it: PHP's json_encode with JSON_INVALID_UTF8_SUBSTITUTE.

Legacy bodies may hold bytes that are not UTF-8. The monolith answers them with U+FFFD in
place of each invalid sequence, following PHP's own decoder (php_next_utf8_char), which cuts
invalid sequences differently from Python's "replace" handler (Python replaces more often).
For parity the read model must hold exactly what the monolith shows, so that decoder's failure
rules are reproduced here and checked against PHP itself in the tests.
"""

from __future__ import annotations

REPLACEMENT = "\ufffd"


def _lead(byte: int) -> bool:
    return byte < 0x80 or 0xC2 <= byte <= 0xF4


def _trail(byte: int) -> bool:
    return 0x80 <= byte <= 0xBF


def _failure_length(data: bytes, pos: int, width: int) -> int:
    """How many bytes PHP skips for an invalid `width`-byte sequence starting at pos."""
    available = len(data) - pos
    for k in range(1, width):
        if available < k + 1 or _lead(data[pos + k]):
            return k
    return width


def php_json_text(data: bytes) -> tuple[str, bool]:
    """(text, faithful): the string the monolith renders for these bytes, and whether they
    were valid UTF-8 (False: some bytes were replaced, the original text is lost)."""
    try:
        return data.decode("utf-8"), True
    except UnicodeDecodeError:
        pass
    out: list[str] = []
    pos, size = 0, len(data)
    while pos < size:
        c = data[pos]
        if c < 0x80:
            out.append(chr(c))
            pos += 1
            continue
        if c < 0xC2 or c > 0xF4:
            out.append(REPLACEMENT)
            pos += 1
            continue
        width = 2 if c < 0xE0 else 3 if c < 0xF0 else 4
        if size - pos < width or not all(_trail(data[pos + k]) for k in range(1, width)):
            out.append(REPLACEMENT)
            pos += _failure_length(data, pos, width)
            continue
        chunk = data[pos : pos + width]
        try:
            out.append(chunk.decode("utf-8"))  # rejects overlong forms, surrogates, > U+10FFFF
        except UnicodeDecodeError:
            out.append(REPLACEMENT)  # PHP skips the whole sequence here
        pos += width
    return "".join(out), False
