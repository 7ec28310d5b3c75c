"""The limits on what people and files may put into a loom, in one place: the API, the CLI and every importer
call these, so the same text is refused the same way on every surface (docs/limits.md).

Each check raises one InvalidInput that names the field and what is wrong with it, before anything is written.
"""

from __future__ import annotations

import re

from .errors import InvalidInput

MAX_TEXT = 1_000_000  # characters in one node's text (a long novel is ~500,000): more is a mistake or an attack
MAX_TAG = 200
MAX_TITLE = 1_000
MAX_QUERY = 1_000  # characters in a search: SQLite refuses LIKE patterns of about 50,000
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
# bidirectional embeddings, overrides and isolates: in a name or a tag they make it show in another order than it
# is ("\u202egnp.exe" reads as "exe.png"), so names and tags refuse them and the terminal shows them escaped
BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")


def unicode_ok(value: str, what: str) -> str:
    """Refuse NUL and lone surrogates: what invalid UTF-8 or a broken \\u escape becomes in Python, and what no
    database can store as text."""
    if "\x00" in value:
        raise InvalidInput(f"{what} contains a NUL character (at character {value.index(chr(0))})")
    m = _SURROGATE.search(value)
    if m:
        raise InvalidInput(f"{what} is not valid Unicode: a lone surrogate U+{ord(m.group()):04X} at character "
                           f"{m.start()} (from invalid UTF-8 or a broken \\u escape)")
    return value


def text(value, what: str = "text", *, empty_ok: bool = False) -> str:
    """Node text: a string of 1 to MAX_TEXT characters (0 allowed where ``empty_ok``), valid Unicode, no NUL."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string, not {type(value).__name__}")
    if value == "" and not empty_ok:
        raise InvalidInput(f"{what} is empty")
    if len(value) > MAX_TEXT:
        raise InvalidInput(f"{what} is {len(value):,} characters long; the limit is {MAX_TEXT:,}")
    return unicode_ok(value, what)


def tag(value) -> str:
    """A tag: 1 to MAX_TAG characters after trimming, no control characters."""
    if not isinstance(value, str):
        raise InvalidInput(f"a tag must be a string, not {type(value).__name__}")
    clean = value.strip()
    if not clean or len(clean) > MAX_TAG:
        shown = clean if len(clean) <= 40 else clean[:40] + "…"
        raise InvalidInput(f"a tag must be 1 to {MAX_TAG} characters, not {len(clean):,} ({shown!r})")
    if _CONTROL.search(clean) or BIDI.search(clean):
        raise InvalidInput(f"a tag cannot contain control or bidirectional-override characters: {ascii(clean)}")
    return unicode_ok(clean, "a tag")


def name(value, what: str, max_len: int = 200) -> str:
    """A one-line name (a rater, a queue, a question, a label): trimmed, 1 to ``max_len`` characters, no control
    characters, valid Unicode."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string, not {type(value).__name__}")
    clean = value.strip()
    if not clean or len(clean) > max_len:
        raise InvalidInput(f"{what} must be 1 to {max_len} characters, not {len(clean):,}")
    if _CONTROL.search(clean) or BIDI.search(clean):
        raise InvalidInput(f"{what} cannot contain control or bidirectional-override characters: {ascii(clean[:60])}")
    return unicode_ok(clean, what)


def title(value) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"a title must be a string, not {type(value).__name__}")
    if len(value) > MAX_TITLE:
        raise InvalidInput(f"a title is at most {MAX_TITLE:,} characters, not {len(value):,}")
    return unicode_ok(value, "the title")


def terminal_safe(value: str) -> str:
    """Text for a terminal: control characters other than newline and tab (ESC, OSC, C1, DEL, …) shown as
    \\u001b-style escapes, so a node cannot move the cursor, retitle or clear the terminal that displays it.
    The escape is JSON's, so JSON passed through it stays valid JSON with the same meaning."""
    return BIDI.sub(_escape, _CONTROL.sub(_escape, value))


def _escape(m: re.Match) -> str:
    ch = m.group()
    return ch if ch in "\n\t" else f"\\u{ord(ch):04x}"
