"""Training rows: SFT ``{"prompt", "completion"}`` or preference ``{"prompt", "chosen", "rejected"}`` (loomwork's
exports), from a JSONL file or straight from a tree, checked and split into train and held-out."""

from __future__ import annotations

import json
import random
from pathlib import Path

from ..errors import InvalidInput

FIELDS = {"sft": ("prompt", "completion"), "dpo": ("prompt", "chosen", "rejected")}
MAX_ROWS = 100_000


def check_rows(rows: list, method: str, where: str = "data", lines: list[int] | None = None) -> list[dict]:
    """The rows, checked; an error names ``where`` and the row's line (``lines``: the file's line numbers)."""
    if method not in FIELDS:
        raise InvalidInput(f"unknown method {method!r} (sft or dpo)")
    fields = FIELDS[method]
    out = []
    for n, row in zip(lines or range(1, len(rows) + 1), rows):
        at = f"{where} line {n}"
        if not isinstance(row, dict):
            raise InvalidInput(f"{at}: expected an object with {', '.join(fields)}")
        for f in fields:
            if f not in row:
                hint = ""
                if method == "sft" and "chosen" in row:
                    hint = "; this looks like preference data: use --method dpo"
                elif method == "dpo" and "completion" in row:
                    hint = "; this looks like SFT data: use --method sft"
                raise InvalidInput(f"{at}: missing field {f!r} ({method} rows have {', '.join(fields)}{hint})")
            if not isinstance(row[f], str):
                raise InvalidInput(f"{at}: {f!r} must be a string")
            if "\x00" in row[f]:
                raise InvalidInput(f"{at}: {f!r} contains a NUL character")
        for f in fields[1:]:
            if not row[f].strip():
                raise InvalidInput(f"{at}: {f!r} is empty")
        if method == "dpo" and row["chosen"] == row["rejected"]:
            raise InvalidInput(f"{at}: 'chosen' and 'rejected' are the same text")
        out.append({f: row[f] for f in fields})
    if not out:
        raise InvalidInput(f"{where} has no rows")
    if len(out) > MAX_ROWS:
        raise InvalidInput(f"{where} has more than {MAX_ROWS} rows")
    return out


def read_rows(path: str | Path, method: str) -> list[dict]:
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}") from None
    rows, numbers = [], []
    for n, line in enumerate(lines, 1):  # blank lines are skipped but counted: errors name the file's lines
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{path.name} line {n}: not JSON ({exc.msg})") from None
        numbers.append(n)
    return check_rows(rows, method, path.name, numbers)


def rows_from_tree(store, tree_id: str, method: str) -> list[dict]:
    """The tree's SFT export (bookmarked paths, fully +1-rated leaves) or preference export (choices, ratings)."""
    from ..supervision import exports

    rows = exports.sft(store, tree_id) if method == "sft" else exports.preference(store, tree_id)
    return check_rows(rows, method, f"tree {tree_id}")


def split(rows: list[dict], heldout: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, held-out): a seeded shuffle, at least one row in each."""
    if len(rows) < 2:
        raise InvalidInput(f"at least 2 rows are needed (one to train on, one held out); got {len(rows)}")
    if not 0 < heldout < 1:
        raise InvalidInput("the held-out fraction must be between 0 and 1")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    k = min(len(rows) - 1, max(1, round(len(rows) * heldout)))
    return [rows[i] for i in order[k:]], [rows[i] for i in order[:k]]
