"""Header values: what may reach a header, and how it is encoded and folded.

Python 3.11's ``email`` package lets a trailing ``\\n`` or a NUL through into
header bytes (CVE-2024-6923 and friends), so campaign_tool never relies on it:
every header-bound value is checked here, and headers are encoded here, by
rules small enough to test exhaustively against the ``email`` parser.
"""

from __future__ import annotations

import base64
import re

MAX_LINE = 78
"""RFC 5322 2.1.1: lines SHOULD be no longer than 78 characters."""
MAX_HARD_LINE = 998
"""RFC 5322 2.1.1: lines MUST be no longer than 998 characters."""
MAX_HEADER_VALUE = 998
"""The longest value (in characters) campaign_tool accepts for one header."""

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMES = {
    "\n": "a line break (LF)",
    "\r": "a carriage return (CR)",
    "\x00": "a NUL character",
    "\t": "a tab",
    "\u0085": "a next-line character (U+0085)",
    "\u2028": "a line separator (U+2028)",
    "\u2029": "a paragraph separator (U+2029)",
}
# RFC 5322 atext plus space: a display name made of these needs no quoting.
_PLAIN_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*")
_HEADER_NAME = re.compile(r"[!-9;-~]+")  # printable ASCII except ':' (RFC 5322 ftext)
# Base64 encoded-words no longer than 64 characters: 9 for "Subject: " plus one
# such word keeps even the first line of a header under 78 characters.
_EW_PREFIX = "=?utf-8?b?"
_EW_MAX_BYTES = 39  # 39 bytes -> 52 base64 characters -> 64-character encoded-word


def unsafe_character(value: str) -> str | None:
    """Describe the first character that must never reach a header, if any.

    C0 controls (CR, LF, NUL, tab ...), DEL, C1 controls (U+0085 among them)
    and the Unicode line and paragraph separators can all end a header line in
    some parser, so they are refused rather than cleaned.
    """
    match = _UNSAFE.search(value)
    if match is None:
        return None
    char = match.group()
    return _NAMES.get(char, f"a control character (U+{ord(char):04X})")


def is_valid_header_name(name: str) -> bool:
    """True when ``name`` is a syntactically valid header field name."""
    return _HEADER_NAME.fullmatch(name) is not None


def _encoded_words(text: str) -> list[str]:
    """Split ``text`` into RFC 2047 base64 encoded-words of bounded length.

    Splits only between characters, never inside a UTF-8 sequence, so each
    word decodes on its own (RFC 2047 section 5), and where it can just after
    a space (kept inside the word), which lenient decoders render best.
    """
    words: list[str] = []
    chunk: list[str] = []
    size = 0
    last_space = -1
    for char in text:
        width = len(char.encode("utf-8"))
        if size + width > _EW_MAX_BYTES and chunk:
            cut = last_space + 1 if last_space >= 0 else len(chunk)
            words.append(_encode_word("".join(chunk[:cut])))
            chunk = chunk[cut:]
            size = sum(len(c.encode("utf-8")) for c in chunk)
            last_space = -1
        chunk.append(char)
        size += width
        if char.isspace():
            last_space = len(chunk) - 1
    if chunk:
        words.append(_encode_word("".join(chunk)))
    return words


def _encode_word(text: str) -> str:
    return _EW_PREFIX + base64.b64encode(text.encode("utf-8")).decode("ascii") + "?="


def _fold(name: str, tokens: list[str], separator: str = " ") -> str:
    """Join ``tokens`` after ``name: `` and fold between them at 78 characters.

    A token is never split, so a single token longer than a line makes a long
    line; callers keep tokens short (encoded-words) or check the hard limit.
    """
    lines: list[str] = []
    current = f"{name}:"
    for index, token in enumerate(tokens):
        glue = " " if index == 0 else separator
        if index and len(current) + len(glue) + len(token) > MAX_LINE:
            lines.append(current + glue.rstrip())
            current = " " + token
        else:
            current += glue + token
    lines.append(current)
    return "\r\n".join(lines) + "\r\n"


def _needs_encoding(value: str) -> bool:
    if not value.isascii() or "=?" in value:
        return True
    # Folding would move or drop white space at the ends or in runs.
    if value != value.strip(" ") or "  " in value:
        return True
    # A run of more than ~70 characters without a space cannot be folded.
    return any(len(word) > MAX_LINE - 8 for word in value.split(" "))


def encode_unstructured(name: str, value: str) -> str:
    """Encode and fold an unstructured header (``Subject`` and the like).

    Plain ASCII is folded at spaces; anything else (non-ASCII, text that looks
    like an encoded-word, a word too long to fold) becomes encoded-words.
    The caller has already refused unsafe characters.
    """
    if not value:
        return f"{name}:\r\n"
    if _needs_encoding(value):
        return _fold(name, _encoded_words(value))
    return _fold(name, value.split(" "))


def format_phrase(display_name: str) -> list[str]:
    """A display name as header tokens: bare, quoted, or encoded-words."""
    if _PLAIN_PHRASE.fullmatch(display_name) and "  " not in display_name:
        stripped = display_name.strip()
        if stripped == display_name and stripped:
            return display_name.split(" ")
    if display_name.isascii() and "=?" not in display_name and len(display_name) < 70:
        escaped = display_name.replace("\\", "\\\\").replace('"', '\\"')
        return [f'"{escaped}"']
    return _encoded_words(display_name)


def encode_mailbox(name: str, address: str, display_name: str | None) -> str:
    """A ``From``/``To``-style header naming exactly one mailbox.

    ``address`` is already validated (one address, no display name) and in the
    form that goes on the wire: the A-label domain unless SMTPUTF8 is needed.
    """
    if not display_name:
        return f"{name}: {address}\r\n"
    return _fold(name, [*format_phrase(display_name), f"<{address}>"])


def encode_list(name: str, items: list[str]) -> str:
    """A comma-separated header (``List-Unsubscribe``), folded after commas."""
    tokens = [item + "," for item in items[:-1]] + items[-1:]
    return _fold(name, tokens)


def longest_line(header_block: str) -> int:
    """Length of the longest physical line of a formatted header block."""
    return max((len(line) for line in header_block.split("\r\n")), default=0)
