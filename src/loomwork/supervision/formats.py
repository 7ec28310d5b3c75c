"""The supervision exports as JSONL text, for `loomwork export --format sft|preference|stepwise|prm800k|ratings`."""

from __future__ import annotations

import json

from ..store import Store
from . import exports, prm800k

FORMATS = ("sft", "preference", "stepwise", "prm800k", "ratings")


def export_jsonl(store: Store, tree_id: str, fmt: str, neutral_is_good: bool = False,
                 question: str = exports.STEP_QUESTION, rater_names: bool = False) -> str:
    """``rater_names``: name raters in prm800k and ratings (by default each is a pseudonym, stable within this
    database)."""
    if fmt == "sft":
        rows = exports.sft(store, tree_id, question)
    elif fmt == "preference":
        rows = exports.preference(store, tree_id, question)
    elif fmt == "stepwise":
        rows = exports.stepwise(store, tree_id, neutral_is_good, question)
    elif fmt == "ratings":
        rows = exports.ratings_rows(store, tree_id, rater_names)
    else:
        rows = prm800k.export(store, tree_id, question, rater_names)
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
