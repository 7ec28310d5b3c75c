"""The JSON API under /api: each route is a thin call into loomwork.ops / the store."""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import Field

from .. import curation, expansion, ledger, navigate, ops, tree_settings, validate
from ..errors import InvalidInput
from ..backends import SamplingParams, list_models
from ..backends.base import TokenEvent
from ..lens.distributions import next_token_entropy
from ..lens.masstree import mass_tree
from ..steering import vectors
from ..store import access
from ..tree import path_text
from .common import Body, allowed_model, load_backend, models_of, node_view, store_of, views, with_counts
from .sse import model_stream, respond

router = APIRouter(prefix="/api")


class NewTree(Body):
    prompt: str
    title: str | None = None


class Text(Body):
    text: str


class Offset(Body):
    offset: int


class Flag(Body):
    on: bool = True


class Tags(Body):
    add: list[str] = Field(default_factory=list)
    remove: list[str] = Field(default_factory=list)


class Chapter(Body):
    title: str | None


class Move(Body):
    parent_id: str


class Branch(Body):
    token_index: int
    alternative: str


class Choose(Body):
    candidates: list[str] | None = None
    acceptable: list[str] | None = None


class Step(Body):
    expect: int | None = None
    force: bool = False


class Expand(Body):
    model: str | None = Field(None, min_length=1)  # left out: the server's default; empty: an error, not the default
    models: list[str] | None = Field(None, min_length=2, max_length=6)  # several at once, n samples from each
    params: dict[str, Any] = Field(default_factory=dict)


@router.get("/models")
def models() -> list[dict]:
    return [m.to_json() for m in list_models()]


@router.get("/models/stats")
def models_stats(request: Request) -> list[dict]:
    """The models this server has loaded and each one's prefix cache: entries, tokens, bytes, peak, hits."""
    return models_of(request).cache_stats()


@router.get("/trees")
def trees(request: Request) -> list[dict]:
    return [{**t.to_json(), "nodes": n} for t, n in store_of(request).trees()]


@router.post("/trees")
def new_tree(body: NewTree, request: Request) -> dict:
    tree, root = ops.new_tree(store_of(request), body.prompt, body.title)
    return {"tree": tree.to_json(), "root": node_view(root, 0)}


@router.get("/trees/{tree_id}")
def tree(tree_id: str, request: Request) -> dict:
    with store_of(request).read() as tx:
        t = tx.tree(tree_id)
        selected = t.meta.get("selected")  # the node the imported file had open, while it exists
        return {"tree": t.to_json(), "version": tx.version(tree_id), "root": views(tx, [tx.node(t.root_id)])[0],
                "role": access.my_role(tx.conn, tree_id),
                "selected": selected if selected and tx.exists(selected) else None,
                "chapters": [{"node_id": i, "title": title} for i, title in tx.chapters(tree_id)]}


@router.get("/trees/{tree_id}/settings")
def get_settings(tree_id: str, request: Request) -> dict:
    """The tree's settings (memory, reference model, generation settings, presets), and the reference model in
    effect (``reference``: the setting, else the tree's base model, else the server's default)."""
    return _settings_view(request, tree_id, tree_settings.get(store_of(request), tree_id))


def _settings_view(request: Request, tree_id: str, settings: dict) -> dict:
    store = store_of(request)
    return {**settings, "reference": tree_settings.reference_model(store, tree_id, request.app.state.default_model)}


@router.put("/trees/{tree_id}/settings")
def put_settings(tree_id: str, settings: dict[str, Any], request: Request) -> dict:
    """Replace the tree's settings; validated whole (a bad field changes nothing)."""
    return _settings_view(request, tree_id, tree_settings.put(store_of(request), tree_id, settings))


@router.patch("/trees/{tree_id}/settings")
def patch_settings(tree_id: str, changes: dict[str, Any], request: Request) -> dict:
    """Change the settings named in the body; the others stay as they are (another tab may have changed them)."""
    return _settings_view(request, tree_id, tree_settings.update(store_of(request), tree_id, changes))


@router.get("/trees/{tree_id}/version")
def version(tree_id: str, request: Request) -> dict:
    with store_of(request).read() as tx:
        return {"version": tx.version(tree_id)}


@router.get("/trees/{tree_id}/history")
def history(tree_id: str, request: Request) -> list[dict]:
    with store_of(request).read() as tx:
        return tx.history(tree_id)


@router.get("/trees/{tree_id}/undo")
def undo_preview(tree_id: str, request: Request) -> dict:
    """What undo and redo would take back or replay now: ``{"undo": entry|null, "redo": entry|null}``, each
    with seq, kind, label, actor and mine (whether the requester did it)."""
    return ops.undo_preview(store_of(request), tree_id)


@router.post("/trees/{tree_id}/undo")
def undo(tree_id: str, request: Request, body: Step | None = None) -> dict:
    """Undo the newest operation. ``expect``: the seq you mean (409 if someone got there first); ``force``:
    take back another person's operation (409 without it)."""
    body = body or Step()
    return ops.undo(store_of(request), tree_id, expect=body.expect, force=body.force)


@router.post("/trees/{tree_id}/redo")
def redo(tree_id: str, request: Request, body: Step | None = None) -> dict:
    body = body or Step()
    return ops.redo(store_of(request), tree_id, expect=body.expect, force=body.force)


@router.get("/nodes/{node_id}")
def node(node_id: str, request: Request) -> dict:
    with store_of(request).read() as tx:
        return views(tx, [tx.node(node_id)])[0]


@router.get("/nodes/{node_id}/path")
def path(node_id: str, request: Request) -> list[dict]:
    with store_of(request).read() as tx:
        return views(tx, tx.path(node_id))


@router.get("/nodes/{node_id}/children")
def children(node_id: str, request: Request, archived: bool = False) -> list[dict]:
    with store_of(request).read() as tx:
        tx.node(node_id)
        return views(tx, tx.children(node_id, include_archived=archived), include_archived=archived)


@router.get("/nodes/{node_id}/outline")
def outline(node_id: str, request: Request, archived: bool = False) -> dict:
    """The children of every node on the path to ``node_id``, in one request: what the tree view needs to show
    the current path unfolded, however deep it is. Nodes come without token records (and mean_logprob: null)."""
    store = store_of(request)
    with store.read() as tx:
        kids = tx.children_of(tx.path_ids(node_id), include_archived=archived, tokens=False)
        counts = tx.child_counts([c.id for cs in kids.values() for c in cs], include_archived=archived)
    return {pid: [node_view(c, counts[c.id], tokens=False) for c in cs] for pid, cs in kids.items()}


@router.post("/nodes/{node_id}/children")
def add_child(node_id: str, body: Text, request: Request) -> dict:
    return node_view(ops.add_child(store_of(request), node_id, body.text), 0)


class Edit(Body):
    text: str
    carry: list[str] = []  # the path that followed the node, carried below the edit (ops.edit_carrying)


@router.post("/nodes/{node_id}/edit")
def edit(node_id: str, body: Edit, request: Request) -> dict:
    edited, copies = ops.edit_carrying(store_of(request), node_id, body.text, body.carry)
    return {**node_view(edited, 0), "carried": [c.id for c in copies]}


@router.post("/nodes/{node_id}/split")
def split(node_id: str, body: Offset, request: Request) -> dict:
    head, tail = ops.split(store_of(request), node_id, body.offset)
    return {"head": node_view(head), "tail": node_view(tail)}


@router.post("/nodes/{node_id}/merge")
def merge(node_id: str, request: Request) -> dict:
    return node_view(ops.merge(store_of(request), node_id))


@router.post("/nodes/{node_id}/archive")
def archive(node_id: str, body: Flag, request: Request) -> dict:
    return node_view(ops.set_archived(store_of(request), node_id, body.on))


@router.post("/nodes/{node_id}/bookmark")
def bookmark(node_id: str, body: Flag, request: Request) -> dict:
    return node_view(ops.set_bookmark(store_of(request), node_id, body.on))


@router.post("/nodes/{node_id}/tags")
def tags(node_id: str, body: Tags, request: Request) -> dict:
    store = store_of(request)
    if body.add:
        ops.tag(store, node_id, *body.add)
    if body.remove:
        ops.untag(store, node_id, *body.remove)
    return node_view(store.node(node_id))


@router.post("/nodes/{node_id}/chapter")
def chapter(node_id: str, body: Chapter, request: Request) -> dict:
    """Name the node as a chapter start (``title``), or take the name away (``null``)."""
    return node_view(ops.set_chapter(store_of(request), node_id, body.title))


@router.post("/nodes/{node_id}/move")
def move(node_id: str, body: Move, request: Request) -> dict:
    return node_view(ops.move(store_of(request), node_id, body.parent_id))


@router.delete("/nodes/{node_id}")
def delete(node_id: str, request: Request) -> dict:
    """Delete a subtree (undoable). A root is refused: DELETE /api/trees/{id} deletes a whole tree."""
    return {"deleted": ops.delete_subtree(store_of(request), node_id)}


@router.delete("/trees/{tree_id}")
def delete_tree(tree_id: str, request: Request) -> dict:
    """Delete a whole tree for good (nothing can undo it)."""
    return {"deleted": ops.delete_tree(store_of(request), tree_id)}


@router.post("/nodes/{node_id}/branch")
def branch(node_id: str, body: Branch, request: Request) -> dict:
    return node_view(ops.branch(store_of(request), node_id, body.token_index, body.alternative), 0)


@router.get("/search")
def search(request: Request, q: str = Query(min_length=1, max_length=validate.MAX_QUERY),
           tree: str | None = None, limit: int = Query(50, ge=1, le=500)) -> list[dict]:
    """Nodes whose text contains ``q`` (1 to 1,000 characters), oldest first."""
    validate.unicode_ok(q, "the search")
    store = store_of(request)
    with store.read() as tx:
        hits = tx.search(q, tree, limit)
        trails = tx.trails([h.id for h in hits])  # every hit's path in one query
        out = []
        for h in hits:
            path = trails[h.id]
            at = h.text.lower().find(q.lower())  # -1 only where the index folds case further than lower()
            out.append({"node": node_view(h, tokens=False), "path": [i for i, _t in path],
                        "match": [at, at + len(q)] if at >= 0 else [0, 0],
                        # what the person sees of where it is: a few words of each node above it
                        "trail": [" ".join(t.split())[:40] or "∅" for _i, t in path[:-1]]})
        return out


@router.get("/nodes/{node_id}/step")
def step(node_id: str, request: Request, to: str = "next", archived: bool = False) -> dict:
    """The node one step away: ``to`` is next or prev (tree order) or next-bookmark or prev-bookmark (wrapping)."""
    return {"id": navigate.step(store_of(request), node_id, to, include_archived=archived)}


@router.get("/resolve")
def resolve(request: Request, ref: str = Query(min_length=1, max_length=100)) -> dict:
    """A node or tree id, or a unique prefix of 4+ characters, as the node to open (a tree's root)."""
    store = store_of(request)
    kind, ident = store.resolve(ref)
    return {"kind": kind, "id": ident, "node_id": ident if kind == "node" else store.tree(ident).root_id}


@router.get("/nodes/{node_id}/subtree")
def subtree(node_id: str, request: Request, limit: int = Query(2000, ge=1, le=20000), archived: bool = False) -> dict:
    """Light rows of up to ``limit`` nodes below ``node_id``, breadth first, for the graph view."""
    return navigate.subtree(store_of(request), node_id, limit, include_archived=archived)


@router.post("/nodes/{node_id}/choose")
def choose(node_id: str, body: Choose, request: Request) -> dict:
    store = store_of(request)
    c = curation.record_choice(store, node_id, body.candidates, body.acceptable)
    return curation.choice_summary(store.node(node_id), c)


async def _reference(request: Request, model: str | None, score: bool):
    return await load_backend(request, model) if score else None


def _reference_model(request: Request, tree_id: str, model: str | None) -> str:
    """The model the accounting scores with: the one asked for, else the tree's reference model setting, else
    its base model, else the server's default (never the generation panel's choice)."""
    default = request.app.state.default_model
    return allowed_model(request, model or tree_settings.reference_model(store_of(request), tree_id, default))


@router.get("/nodes/{node_id}/bits")
async def node_bits(node_id: str, request: Request, model: str | None = None, score: bool = True,
                    model_kl: bool = False) -> dict:
    """The optimization ledger along the path (docs/metrics.md). ``score=false`` answers at once from the
    cached scores, counting what is not scored yet as ``pending``; the page then asks /bits/stream.
    ``model_kl=true`` computes the model lever for nodes another model generated (two passes per node)."""
    store = store_of(request)
    ref = _reference_model(request, store.node(node_id).tree_id, model)
    backend = await load_backend(request, ref) if score or model_kl else None
    return await ledger.path_report(store, node_id, ref, backend, with_model_kl=model_kl, models=models_of(request))


@router.get("/nodes/{node_id}/bits/stream")
async def node_bits_stream(node_id: str, request: Request, model: str | None = None) -> StreamingResponse:
    """Server-sent events: ``status``, then ``done {report}`` once every written node of the path is scored (in
    one pass, at background priority: a generation waits at most one chunk). Closing the stream cancels it."""
    store = store_of(request)
    ref = _reference_model(request, store.node(node_id).tree_id, model)

    async def events():
        cancel = threading.Event()
        try:
            yield "status", {"message": f"scoring with {ref}…"}
            backend = await load_backend(request, ref)
            yield "done", {"report": await ledger.path_report(store, node_id, ref, backend, cancel)}
        finally:
            cancel.set()  # the page moved on (or it finished): the scoring thread stops at its next chunk

    return respond(events())


@router.get("/trees/{tree_id}/bits")
async def tree_bits(tree_id: str, request: Request, model: str | None = None, score: bool = True,
                    model_kl: bool = False) -> dict:
    store = store_of(request)
    store.tree(tree_id)
    ref = _reference_model(request, tree_id, model)
    backend = await load_backend(request, ref) if score or model_kl else None
    return await ledger.tree_report(store, tree_id, backend, model_kl, models=models_of(request))


@router.get("/nodes/{node_id}/next")
async def next_tokens(node_id: str, request: Request, model: str | None = None, k: int = Query(10, ge=1, le=50)) -> dict:
    """The next-token distribution after the node's full text (top k, with entropy over them)."""
    store = store_of(request)
    backend = await _reference(request, model, True)
    return await next_token_entropy(backend, path_text(store.path(node_id)), k)


@router.get("/nodes/{node_id}/mass-tree")
async def node_mass_tree(node_id: str, request: Request, model: str | None = None,
                         depth: int = Query(3, ge=1, le=6), cutoff: float = Query(0.02, gt=0, lt=1)) -> dict:
    """The probability-mass tree below the node's full text (lens/masstree.py)."""
    store = store_of(request)
    backend = await _reference(request, model, True)
    return await mass_tree(backend, path_text(store.path(node_id)), depth, cutoff)


@router.post("/nodes/{node_id}/expand")
async def expand(node_id: str, body: Expand, request: Request) -> StreamingResponse:
    """Server-sent events: ``status``, then ``token`` ({index, text, logprob}) as samples grow, then ``done``
    ({children}) once they are stored, or ``error`` ({message}). Closing the stream cancels the expansion, and
    then nothing is stored."""
    store = store_of(request)
    params = SamplingParams.make(**body.params)  # bad parameters: a 400 before any stream starts
    store.node(node_id)
    for s in params.steer:  # a missing steering vector: a 404 before the stream starts
        vectors.show(store, s.name)
    if body.models is not None:
        if body.model is not None:
            raise InvalidInput("give model (one) or models (several), not both")
        return respond(_expand_with_models(request, node_id, [allowed_model(request, m) for m in body.models],
                                           params))
    model = allowed_model(request, body.model)

    async def work(backend):
        yield "status", {"message": f"generating with {backend.ref}…"}
        async for ev in expansion.expand_stream(store, node_id, backend, params):
            if isinstance(ev, TokenEvent):
                yield "token", {"index": ev.index, "text": ev.token.text, "logprob": ev.token.logprob}
            else:
                yield "done", {"children": with_counts(store, ev)}

    return model_stream(lambda: load_backend(request, model), model, work)


async def _expand_with_models(request: Request, node_id: str, refs: list[str], params: SamplingParams):
    """Several models at once (expansion.expand_with_models), streamed: ``token`` events carry the sample's place
    among all (model k's sample i is k × n + i) and its model; ``done`` has every model's children."""
    store = store_of(request)
    backends = []
    for ref in refs:
        yield "status", {"message": f"loading {ref}…"}
        backends.append(await load_backend(request, ref))
    children = []
    plans = expansion.plan(store, backends, params)  # every model's steering checked before any model runs
    for k, (backend, resolved) in enumerate(plans):
        yield "status", {"message": f"generating with {backend.ref} ({k + 1} of {len(plans)})…"}
        async for ev in ops.expand_stream(store, node_id, backend, resolved):
            if isinstance(ev, TokenEvent):
                yield "token", {"index": k * resolved.n + ev.index, "text": ev.token.text, "logprob": ev.token.logprob,
                                "model": backend.ref}
            else:
                children += with_counts(store, ev)
    yield "done", {"children": children}
