"""The writing lever measured: the reference model's token logprobs of what counts in every written node on a
path (levers/writing.py says what counts), each after everything before it (the tree's memory first), cached per
node, model and context; what is missing is scored in one pass over the whole path, in the background when the
page asks (generation first, cancelled when the page moves on)."""

from __future__ import annotations

import asyncio
import hashlib
import math
import threading

from ..backends.base import Backend
from ..errors import BackendError
from ..levers.writing import edit_span, is_written
from ..store import Store, Tx, retrying
from ..store import ledger as sql
from ..tree import Node, Token


def _key(context: str, text: str) -> str:
    return hashlib.sha256(f"{len(context)}:{context}{text}".encode()).hexdigest()


def _originals(tx: Tx, path: list[Node]) -> dict[str, Node | None]:
    """For each edited node on the path, the node it was first made from (following edits of edits), or None
    when that is gone."""
    out: dict[str, Node | None] = {}
    for n in path:
        if n.origin != "edit" or n.parent_id is None:
            continue
        src, seen = n, set()
        while src is not None and src.origin == "edit" and src.source_id and src.id not in seen:
            seen.add(src.id)
            src = tx.node(src.source_id) if tx.exists(src.source_id) else None
        out[n.id] = src if src is not None and src.origin != "edit" else None
    return out


def _written_segments(path: list[Node], originals: dict[str, Node | None]) -> dict[int, tuple[str, str, str]]:
    """Per written node (by index): (text before what counts, what counts, text after) within the node. An edit
    of a model node counts only what the person changed; everything else a person wrote counts whole."""
    out = {}
    for i, n in enumerate(path):
        if not (is_written(n) and n.text):
            continue
        original = originals.get(n.id)
        if n.origin == "edit" and original is not None and original.origin == "model":
            out[i] = edit_span(original.text, n.text)
        else:
            out[i] = ("", n.text, "")
    return out


async def score_path(store: Store, path: list[Node], ref: str, memory: str = "", backend: Backend | None = None,
                     cancel: threading.Event | None = None) -> dict[str, list[Token] | None]:
    """Reference model ``ref``'s token logprobs of what counts in every written node on the path (its whole text,
    or for an edit of a model node the span the person changed), each after everything before it (the tree's
    memory first). Cached per node, model and context. What is missing is computed with ``backend`` in one pass
    over the whole path, at background priority and cancellable; without a backend it stays None."""
    with store.read() as tx:
        originals = _originals(tx, path)
    spans = _written_segments(path, originals)
    keys, context = {}, memory
    for i, n in enumerate(path):
        if i in spans:
            pre, changed, _post = spans[i]
            keys[i] = _key(context + pre, changed)
        context += n.text
    out: dict[str, list[Token] | None] = {}
    with store.read() as tx:
        for i in spans:
            if not spans[i][1]:
                out[path[i].id] = []  # a cut at the end of a node: nothing new to count
                continue
            cached = sql.score(tx, path[i].id, ref, keys[i])
            out[path[i].id] = None if cached is None else [Token.from_json(t) for t in cached]
    missing = [i for i in spans if out[path[i].id] is None]
    if missing and backend is not None:
        segments, where = [memory], {}
        for i, n in enumerate(path):
            if i in missing:
                pre, changed, post = spans[i]
                segments += [pre, changed, post]
                where[i] = len(segments) - 2
            else:
                segments.append(n.text)
        scored = await backend.score_segments(segments, sorted(where.values()), cancel)
        bad = next((t for i in missing for t in scored[where[i]] if not math.isfinite(t.logprob)), None)
        if bad is not None:  # never cache (or add up) what a broken model says
            raise BackendError(f"{ref} gave a non-finite logprob ({bad.logprob}) for {bad.text!r}: its weights look "
                               "broken; reload it (restart the server)")
        rows = [(path[i].id, keys[i], scored[where[i]]) for i in missing]
        await asyncio.to_thread(_put_scores, store, ref, rows)
        out.update({node_id: toks for node_id, _k, toks in rows})
    return out


@retrying
def _put_scores(store: Store, ref: str, rows: list) -> None:
    with store.tx() as tx:
        for node_id, key, toks in rows:
            sql.put_score(tx, node_id, ref, key, [t.to_json() for t in toks])
