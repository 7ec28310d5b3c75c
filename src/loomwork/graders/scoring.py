"""A grader's score of a text in its context, and of nodes (cached per grader and context).

- judge: log P(yes) − log P(no) in nats, the judge model reading its template with the text (and context) in it;
  each answer as a whole word: the answer followed by a space, punctuation or a new line (WORD_ENDS), summed over
  those, so " yes" and " yes," count and " yesterday" does not (nor " not", " now" or " none" for " no").
- callable: ``function(text, context)`` must return a finite number.
- person: the mean of the latest audit ratings of the node on the grader's question (−1, 0, +1); a node nobody
  rated has no score.
- reward: a reward model's number for context + text (reward.py).
A failure on one text is that text's error (reported, stored); it never stops the others.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Callable

from ..backends.pool import PROCESS, ModelPool
from ..store import Store, retrying
from ..store import graders as sql
from ..store import supervision
from ..supervision.ratings import current
from ..tree import path_text
from ..units import logsumexp
from .registry import resolve_callable


def key(grader: dict, context: str, text: str) -> str:
    rule = [RULE] if grader["kind"] == "judge" else []  # a judge's scores under an earlier rule are not reused
    return hashlib.sha256(json.dumps([grader["kind"], grader["config"], context, text, *rule]).encode()).hexdigest()


def judge_prompt(grader: dict, context: str, text: str) -> str:
    # replace, not str.format: the text may hold braces
    return grader["config"]["template"].replace("{context}", context).replace("{text}", text)


async def score_texts(grader: dict, context: str, texts: list[str], node_ids: list[str] | None = None,
                      store: Store | None = None, progress: Callable[[int, int], None] | None = None,
                      models: ModelPool = PROCESS) -> list[tuple[float | None, str | None]]:
    """(score, error) per text, all read after ``context``; ``progress(done, total)`` after each text; a judge's
    model from ``models``."""
    out = await _score_texts(grader, context, texts, node_ids, store, progress or (lambda _d, _t: None), models)
    if progress:
        progress(len(texts), len(texts))
    return out


WORD_ENDS = (" ", ",", ".", "!", "?", ";", ":", "\n")  # what may follow an answer for it to be a whole word
RULE = "whole-word-v2"  # the judge's rule, part of its scores' cache key (v1 counted any text starting with it)


async def whole_words(backend, prompt: str, answers: list[str]) -> list[float]:
    """log P(each answer as a whole word): log Σ over WORD_ENDS of P(answer, then text starting with it)."""
    rows = await backend.score_answers(prompt, answers, list(WORD_ENDS))
    return [logsumexp(row) for row in rows]


async def _score_texts(grader: dict, context: str, texts: list[str], node_ids: list[str] | None,
                       store: Store | None, progress: Callable[[int, int], None], models: ModelPool) -> list:
    kind, cfg = grader["kind"], grader["config"]
    if kind == "judge":
        backend = await models.aget(cfg["model"])
        out = []
        for i, text in enumerate(texts):
            progress(i, len(texts))
            try:
                yes, no = await whole_words(backend, judge_prompt(grader, context, text), [cfg["yes"], cfg["no"]])
                out.append((yes - no, None) if math.isfinite(yes - no) else (None, "the judge gave a non-finite score"))
            except Exception as exc:  # noqa: BLE001 (recorded for this text; the others go on)
                out.append((None, f"{type(exc).__name__}: {exc}"))
        return out
    if kind == "callable":
        fn = resolve_callable(cfg["target"])
        out = []
        for text in texts:
            try:
                value = fn(text, context)
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    out.append((None, f"{cfg['target']} returned {value!r}, not a finite number"))
                else:
                    out.append((float(value), None))
            except Exception as exc:  # noqa: BLE001
                out.append((None, f"{cfg['target']} raised {type(exc).__name__}: {exc}"))
        return out
    if kind == "reward":
        from .reward import score as reward_score

        out = []
        for i, text in enumerate(texts):
            progress(i, len(texts))
            try:
                value = reward_score(cfg["path"], context, text)
                out.append((value, None) if math.isfinite(value) else (None, "the reward model gave a non-finite score"))
            except Exception as exc:  # noqa: BLE001 (recorded for this text; the others go on)
                out.append((None, f"{type(exc).__name__}: {exc}"))
        return out
    # a person: the audit ratings of each node on the question
    out = []
    with store.read() as tx:
        rows = current(supervision.ratings_for(tx, node_ids=node_ids or []))
    for node_id in node_ids or []:
        labels = [r["label"] for (n, _rater, q), r in rows.items() if n == node_id and q == cfg["question"]]
        out.append((sum(labels) / len(labels), None) if labels else (None, "nobody rated this node on "
                                                                        f"{cfg['question']!r}"))
    return out


async def score_nodes(store: Store, grader: dict, node_ids: list[str], refresh: bool = False,
                      models: ModelPool = PROCESS) -> dict[str, dict]:
    """``{node_id: {"score", "error"}}``; scores already stored for the same grader and context are reused (a
    person's ratings are always read afresh)."""
    out: dict[str, dict] = {}
    todo: dict[str, list[tuple[str, str, str]]] = {}  # context -> (node id, text, key)
    for node_id in node_ids:
        path = store.path(node_id)
        context, text = path_text(path[:-1]), path[-1].text
        k = key(grader, context, text)
        if grader["kind"] != "person" and not refresh:
            with store.read() as tx:
                row = sql.score_of(tx, grader["id"], node_id, k)
            if row is not None:
                out[node_id] = {**row, "cached": True}
                continue
        todo.setdefault(context, []).append((node_id, text, k))
    for context, items in todo.items():
        results = await score_texts(grader, context, [t for _n, t, _k in items], [n for n, _t, _k in items], store,
                                    models=models)
        for (node_id, _text, k), (score, error) in zip(items, results):
            out[node_id] = {"score": score, "error": error}
            if grader["kind"] != "person":
                _put(store, grader["id"], node_id, k, score, error)
    return out


@retrying
def _put(store: Store, grader_id: str, node_id: str, k: str, score: float | None, error: str | None) -> None:
    with store.tx() as tx:
        sql.put_score(tx, grader_id, node_id, k, score, error)
