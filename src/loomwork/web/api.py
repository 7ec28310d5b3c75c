"""The JSON API under /api: each route is a thin call into loomwork.ops / the store."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from .. import curation, ops, validate
from ..backends import SamplingParams, get_backend, list_models
from ..backends.base import TokenEvent
from ..errors import LoomworkError
from ..store import Store, Tx
from ..lens.distributions import next_token_entropy
from ..lens.masstree import mass_tree
from ..tree import Node, path_text

router = APIRouter(prefix="/api")


def _store(request: Request) -> Store:
    return request.app.state.store


def node_view(n: Node, child_count: int | None = None, tokens: bool = True) -> dict[str, Any]:
    d = n.to_json()
    if not tokens:
        del d["tokens"]
    if child_count is not None:
        d["child_count"] = child_count
    lps = [t.logprob for t in n.tokens if t.logprob is not None]
    d["mean_logprob"] = sum(lps) / len(lps) if lps else None
    return d


def _views(tx: Tx, nodes: list[Node]) -> list[dict]:
    """Node views with child counts, read in the caller's transaction (one snapshot, one round of BEGIN/COMMIT)."""
    counts = tx.child_counts([n.id for n in nodes])
    return [node_view(n, counts[n.id]) for n in nodes]


def _with_counts(store: Store, nodes: list[Node]) -> list[dict]:
    with store.read() as tx:
        return _views(tx, nodes)


class NewTree(BaseModel):
    prompt: str
    title: str | None = None


class Text(BaseModel):
    text: str


class Offset(BaseModel):
    offset: int


class Flag(BaseModel):
    on: bool = True


class Tags(BaseModel):
    add: list[str] = Field(default_factory=list)
    remove: list[str] = Field(default_factory=list)


class Move(BaseModel):
    parent_id: str


class Branch(BaseModel):
    token_index: int
    alternative: str


class Choose(BaseModel):
    candidates: list[str] | None = None
    acceptable: list[str] | None = None


class Step(BaseModel):
    expect: int | None = None
    force: bool = False


class Expand(BaseModel):
    model: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


@router.get("/models")
def models() -> list[dict]:
    return [m.to_json() for m in list_models()]


@router.get("/trees")
def trees(request: Request) -> list[dict]:
    return [{**t.to_json(), "nodes": n} for t, n in _store(request).trees()]


@router.post("/trees")
def new_tree(body: NewTree, request: Request) -> dict:
    tree, root = ops.new_tree(_store(request), body.prompt, body.title)
    return {"tree": tree.to_json(), "root": node_view(root, 0)}


@router.get("/trees/{tree_id}")
def tree(tree_id: str, request: Request) -> dict:
    with _store(request).read() as tx:
        t = tx.tree(tree_id)
        return {"tree": t.to_json(), "version": tx.version(tree_id), "root": _views(tx, [tx.node(t.root_id)])[0]}


@router.get("/trees/{tree_id}/version")
def version(tree_id: str, request: Request) -> dict:
    with _store(request).read() as tx:
        return {"version": tx.version(tree_id)}


@router.get("/trees/{tree_id}/history")
def history(tree_id: str, request: Request) -> list[dict]:
    with _store(request).read() as tx:
        return tx.history(tree_id)


@router.get("/trees/{tree_id}/undo")
def undo_preview(tree_id: str, request: Request) -> dict:
    """What undo and redo would take back or replay now: ``{"undo": entry|null, "redo": entry|null}``, each
    with seq, kind, label, actor and mine (whether the requester did it)."""
    return ops.undo_preview(_store(request), tree_id)


@router.post("/trees/{tree_id}/undo")
def undo(tree_id: str, request: Request, body: Step | None = None) -> dict:
    """Undo the newest operation. ``expect``: the seq you mean (409 if someone got there first); ``force``:
    take back another person's operation (409 without it)."""
    body = body or Step()
    return ops.undo(_store(request), tree_id, expect=body.expect, force=body.force)


@router.post("/trees/{tree_id}/redo")
def redo(tree_id: str, request: Request, body: Step | None = None) -> dict:
    body = body or Step()
    return ops.redo(_store(request), tree_id, expect=body.expect, force=body.force)


@router.get("/nodes/{node_id}")
def node(node_id: str, request: Request) -> dict:
    with _store(request).read() as tx:
        return _views(tx, [tx.node(node_id)])[0]


@router.get("/nodes/{node_id}/path")
def path(node_id: str, request: Request) -> list[dict]:
    with _store(request).read() as tx:
        return _views(tx, tx.path(node_id))


@router.get("/nodes/{node_id}/children")
def children(node_id: str, request: Request, archived: bool = False) -> list[dict]:
    with _store(request).read() as tx:
        tx.node(node_id)
        return _views(tx, tx.children(node_id, include_archived=archived))


@router.get("/nodes/{node_id}/outline")
def outline(node_id: str, request: Request, archived: bool = False) -> dict:
    """The children of every node on the path to ``node_id``, in one request: what the tree view needs to show
    the current path unfolded, however deep it is. Nodes come without token records (and mean_logprob: null)."""
    store = _store(request)
    with store.read() as tx:
        kids = tx.children_of(tx.path_ids(node_id), include_archived=archived, tokens=False)
        counts = tx.child_counts([c.id for cs in kids.values() for c in cs])
    return {pid: [node_view(c, counts[c.id], tokens=False) for c in cs] for pid, cs in kids.items()}


@router.post("/nodes/{node_id}/children")
def add_child(node_id: str, body: Text, request: Request) -> dict:
    return node_view(ops.add_child(_store(request), node_id, body.text), 0)


@router.post("/nodes/{node_id}/edit")
def edit(node_id: str, body: Text, request: Request) -> dict:
    return node_view(ops.edit(_store(request), node_id, body.text), 0)


@router.post("/nodes/{node_id}/split")
def split(node_id: str, body: Offset, request: Request) -> dict:
    head, tail = ops.split(_store(request), node_id, body.offset)
    return {"head": node_view(head), "tail": node_view(tail)}


@router.post("/nodes/{node_id}/merge")
def merge(node_id: str, request: Request) -> dict:
    return node_view(ops.merge(_store(request), node_id))


@router.post("/nodes/{node_id}/archive")
def archive(node_id: str, body: Flag, request: Request) -> dict:
    return node_view(ops.set_archived(_store(request), node_id, body.on))


@router.post("/nodes/{node_id}/bookmark")
def bookmark(node_id: str, body: Flag, request: Request) -> dict:
    return node_view(ops.set_bookmark(_store(request), node_id, body.on))


@router.post("/nodes/{node_id}/tags")
def tags(node_id: str, body: Tags, request: Request) -> dict:
    store = _store(request)
    if body.add:
        ops.tag(store, node_id, *body.add)
    if body.remove:
        ops.untag(store, node_id, *body.remove)
    return node_view(store.node(node_id))


@router.post("/nodes/{node_id}/move")
def move(node_id: str, body: Move, request: Request) -> dict:
    return node_view(ops.move(_store(request), node_id, body.parent_id))


@router.delete("/nodes/{node_id}")
def delete(node_id: str, request: Request) -> dict:
    return {"deleted": ops.delete_subtree(_store(request), node_id)}


@router.post("/nodes/{node_id}/branch")
def branch(node_id: str, body: Branch, request: Request) -> dict:
    return node_view(ops.branch(_store(request), node_id, body.token_index, body.alternative), 0)


@router.get("/search")
def search(request: Request, q: str = Query(min_length=1, max_length=validate.MAX_QUERY),
           tree: str | None = None, limit: int = Query(50, ge=1, le=500)) -> list[dict]:
    """Nodes whose text contains ``q`` (1 to 1,000 characters), oldest first."""
    validate.unicode_ok(q, "the search")
    store = _store(request)
    with store.read() as tx:
        hits = tx.search(q, tree, limit)
        return [{"node": node_view(h), "path": [p.id for p in tx.path(h.id)]} for h in hits]


@router.post("/nodes/{node_id}/choose")
def choose(node_id: str, body: Choose, request: Request) -> dict:
    c = curation.record_choice(_store(request), node_id, body.candidates, body.acceptable)
    return {"id": c.id, "chosen": c.chosen_id, "candidates": list(c.candidates),
            "acceptable": list(c.acceptable) if c.acceptable else None, "bits": c.bits}


async def _reference(request: Request, model: str | None, score: bool):
    return await asyncio.to_thread(get_backend, model or request.app.state.default_model) if score else None


@router.get("/nodes/{node_id}/bits")
async def node_bits(node_id: str, request: Request, model: str | None = None, score: bool = True) -> dict:
    """Selection and intervention bits along the path (docs/metrics.md); scoring is cached per node."""
    store = _store(request)
    store.node(node_id)
    return await curation.path_report(store, node_id, await _reference(request, model, score))


@router.get("/trees/{tree_id}/bits")
async def tree_bits(tree_id: str, request: Request, model: str | None = None, score: bool = True) -> dict:
    store = _store(request)
    store.tree(tree_id)
    return await curation.tree_report(store, tree_id, await _reference(request, model, score))


@router.get("/nodes/{node_id}/next")
async def next_tokens(node_id: str, request: Request, model: str | None = None, k: int = Query(10, ge=1, le=50)) -> dict:
    """The next-token distribution after the node's full text (top k, with entropy over them)."""
    store = _store(request)
    backend = await _reference(request, model, True)
    return await next_token_entropy(backend, path_text(store.path(node_id)), k)


@router.get("/nodes/{node_id}/mass-tree")
async def node_mass_tree(node_id: str, request: Request, model: str | None = None,
                         depth: int = Query(3, ge=1, le=6), cutoff: float = Query(0.02, gt=0, lt=1)) -> dict:
    """The probability-mass tree below the node's full text (lens/masstree.py)."""
    store = _store(request)
    backend = await _reference(request, model, True)
    return await mass_tree(backend, path_text(store.path(node_id)), depth, cutoff)


def _sse(event: str, data: Any) -> bytes:
    # backslashreplace: a lone surrogate echoed in a message becomes its JSON escape, not a failed stream
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode("utf-8", "backslashreplace")


@router.post("/nodes/{node_id}/expand")
async def expand(node_id: str, body: Expand, request: Request) -> StreamingResponse:
    """Server-sent events: ``status``, then ``token`` ({index, text, logprob}) as samples grow, then ``done``
    ({children}) once they are stored, or ``error`` ({message}). Closing the stream cancels the expansion, and
    then nothing is stored."""
    store = _store(request)
    params = SamplingParams.make(**body.params)  # bad parameters: a 400 before any stream starts
    store.node(node_id)
    model = validate.unicode_ok(body.model or request.app.state.default_model, "the model")

    async def events():
        try:
            yield _sse("status", {"message": f"loading {model}…"})
            backend = await asyncio.to_thread(get_backend, model)
            yield _sse("status", {"message": f"generating with {backend.ref}…"})
            async for ev in ops.expand_stream(store, node_id, backend, params):
                if isinstance(ev, TokenEvent):
                    yield _sse("token", {"index": ev.index, "text": ev.token.text, "logprob": ev.token.logprob})
                else:
                    yield _sse("done", {"children": _with_counts(store, ev)})
        except LoomworkError as exc:
            yield _sse("error", {"message": str(exc)})

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
