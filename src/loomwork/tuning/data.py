"""Training rows: SFT ``{"prompt", "completion"}`` or preference ``{"prompt", "chosen", "rejected"}`` (loomwork's
exports), from a JSONL file or straight from a tree, checked and split into train and held-out."""

from __future__ import annotations

import hashlib
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


def parse_heldout(value: str, method: str) -> tuple[float, list[dict] | None]:
    """A --heldout option: a share of the prompts ("0.2"), or a JSONL file of held-out rows."""
    try:
        return float(value), None
    except ValueError:
        pass
    if not Path(value).is_file():
        raise InvalidInput(f"--heldout is a share of the prompts (0.2) or a file of held-out rows, not {value!r}")
    return 0.2, read_rows(value, method)


def _keys(row: dict) -> list[tuple[str, str]]:
    """What a row shares with another on the same side of a split: its prompt, its response texts, and its prompt
    followed by each response (the prompt a deeper step of the same path reads)."""
    keys = [("prompt" if field == "prompt" else "text", text) for field, text in row.items()]
    return keys + [("prompt", row["prompt"] + text) for field, text in row.items() if field != "prompt"]


def _groups(rows: list[dict]) -> list[list[int]]:
    """Rows joined when they share a prompt or a response text, or when one's prompt is another's prompt and
    response (a deeper step of the same path; union-find): what must land on one side of a split for no held-out
    prompt or text to appear in training. Prompts that only begin alike (two branches of one tree) are different
    prompts."""
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[tuple[str, str], int] = {}
    for i, row in enumerate(rows):
        for key in _keys(row):
            if key in first:
                parent[find(i)] = find(first[key])
            else:
                first[key] = i
    by_root: dict[int, list[int]] = {}
    for i in range(len(rows)):
        by_root.setdefault(find(i), []).append(i)
    return list(by_root.values())


def split(rows: list[dict], heldout: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, held-out) by prompt: a seeded ``heldout`` share of the prompts (rows sharing a prompt or a response
    text count as one prompt) is held out with all its rows, at least one on each side."""
    if not 0 < heldout < 1:
        raise InvalidInput("the held-out fraction must be between 0 and 1 (or a file of held-out rows)")
    if len(rows) < 2:
        raise InvalidInput(f"at least 2 rows are needed (one to train on, one held out); got {len(rows)}")
    groups = _groups(rows)
    if len(groups) < 2:
        raise InvalidInput(f"all {len(rows)} rows are joined by prompts or texts they share (one prompt, or one "
                           "response repeated across prompts): nothing can be held out without the held-out rows "
                           "appearing in training; add rows with other prompts and texts, or give a file of "
                           "held-out rows (on the command line: --heldout FILE)")
    random.Random(seed).shuffle(groups)
    k = min(len(groups) - 1, max(1, round(len(groups) * heldout)))
    held = sorted(i for g in groups[:k] for i in g)
    train = sorted(i for g in groups[k:] for i in g)
    return [rows[i] for i in train], [rows[i] for i in held]


def split_with(rows: list[dict], held: list[dict]) -> tuple[list[dict], list[dict], int]:
    """(train, held-out, rows dropped): the held-out rows given, and the training rows that share no prompt and no
    text with them (a row that does is dropped, not trained on)."""
    keys = {k for r in held for k in _keys(r)}
    train = [r for r in rows if not any(k in keys for k in _keys(r))]
    if not train:
        raise InvalidInput(f"every one of the {len(rows)} rows shares a prompt or a text with the held-out rows: "
                           "nothing is left to train on")
    return train, held, len(rows) - len(train)


def digest(rows: list[dict]) -> str:
    """sha256 of the rows as used, one canonical JSON object a line, in order: what an adapter was trained on."""
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps(r, sort_keys=True, ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()
