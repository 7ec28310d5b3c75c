"""Contrast pairs: a plus text and a minus text. From the command line, the API or a JSONL file."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InvalidInput

MAX_PAIRS = 512
MAX_TEXT = 4000


def check_pair(plus, minus, where: str = "") -> dict:
    """``{"plus", "minus"}``, or one InvalidInput naming what is wrong (and where)."""
    at = f"{where}: " if where else ""
    for field, text in (("plus", plus), ("minus", minus)):
        if not isinstance(text, str):
            raise InvalidInput(f"{at}'{field}' must be a string")
        if not text.strip():
            raise InvalidInput(f"{at}'{field}' is empty")
        if len(text) > MAX_TEXT:
            raise InvalidInput(f"{at}'{field}' is longer than {MAX_TEXT} characters")
        if "\x00" in text:
            raise InvalidInput(f"{at}'{field}' contains a NUL character")
    if plus == minus:
        raise InvalidInput(f"{at}'plus' and 'minus' are the same text: their difference is zero")
    return {"plus": plus, "minus": minus}


def read_pairs(path: str | Path) -> list[dict]:
    """Pairs from a JSONL file: one ``{"plus": ..., "minus": ...}`` object a line (blank lines skipped)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read pairs file {path}: {exc}") from None
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{path.name} line {n}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise InvalidInput(f"{path.name} line {n}: expected an object with 'plus' and 'minus'")
        extra = set(row) - {"plus", "minus"}
        if extra:
            raise InvalidInput(f"{path.name} line {n}: unknown field {sorted(extra)[0]!r} (fields: plus, minus)")
        for field in ("plus", "minus"):
            if field not in row:
                raise InvalidInput(f"{path.name} line {n}: missing field '{field}'")
        out.append(check_pair(row["plus"], row["minus"], f"{path.name} line {n}"))
    if not out:
        raise InvalidInput(f"{path.name} has no pairs")
    return out


def collect(plus: list[str] | tuple[str, ...] = (), minus: list[str] | tuple[str, ...] = (),
            pairs: list[dict] | None = None) -> list[dict]:
    """The pairs given as matching --plus/--minus texts and/or a list of pairs."""
    if len(plus) != len(minus):
        raise InvalidInput(f"give as many --minus texts as --plus texts ({len(plus)} plus, {len(minus)} minus)")
    out = [check_pair(p, m, f"pair {i + 1}") for i, (p, m) in enumerate(zip(plus, minus))]
    for i, row in enumerate(pairs or []):
        if not isinstance(row, dict):
            raise InvalidInput(f"pairs[{i}]: expected an object with 'plus' and 'minus'")
        out.append(check_pair(row.get("plus"), row.get("minus"), f"pairs[{i}]"))
    if not out:
        raise InvalidInput("no contrast pairs: give --plus and --minus texts, or --pairs FILE.jsonl")
    if len(out) > MAX_PAIRS:
        raise InvalidInput(f"at most {MAX_PAIRS} pairs")
    return out
