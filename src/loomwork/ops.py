"""Tree operations on a Store. Each one validates first and then writes in one transaction, so a refused or
failed operation changes nothing.

Each write transaction starts by locking the tree it changes (``tx.lock``) and only then reads what it checks, so
concurrent operations on a tree take turns and every check holds until its write commits (docs/concurrency.md).
``@retrying`` runs an operation again if PostgreSQL aborted it as a serialization failure or deadlock.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import AsyncIterator, Callable, Sequence

from . import validate
from .backends.base import Backend, Done, SamplingParams, TokenEvent
from .errors import Conflict, InvalidInput, NotFound
from .store import Store, Tx, retrying
from .store.journal import current_actor
from .tree import (Generation, Node, Token, Tree, join_tokens, new_id, path_text, short_title, split_tokens,
                   tokens_text, utcnow)

MAX_TAG = validate.MAX_TAG
_text = validate.text


def _node(tx: Tx, **fields) -> Node:
    """A new node, with who made it in ``meta["by"]`` (the graph view colours by it)."""
    fields["meta"] = {**fields.get("meta", {}), "by": current_actor()}
    return tx.insert_node(Node(id=new_id(), **fields))


@retrying
def new_tree(store: Store, prompt: str, title: str | None = None) -> tuple[Tree, Node]:
    """A new tree whose root holds ``prompt``."""
    _text(prompt, "the prompt")
    if title is not None:
        validate.title(title)
    tree_id = new_id()
    root = Node(id=new_id(), tree_id=tree_id, parent_id=None, text=prompt, origin="prompt",
                meta={"by": current_actor()})
    tree = Tree(id=tree_id, root_id=root.id, title=title or short_title(prompt) or "untitled")
    with store.tx() as tx:
        tx.insert_tree(tree)
        tx.insert_node(root)
    return tree, root


def _named(node: Node) -> str:
    """A node as the undo history names it: by its first words (a person reads words, not ids)."""
    flat = " ".join((node.text or "∅").split())
    return f"“{flat[:40]}{'…' if len(flat) > 40 else ''}”"


@retrying
def add_child(store: Store, parent_id: str, text: str, origin: str = "human") -> Node:
    _text(text)
    if origin not in ("human", "prompt"):
        raise InvalidInput(f"a written child has origin human or prompt, not {origin!r}")
    with store.tx() as tx:
        parent = tx.lock(parent_id)
        tx.log(parent.tree_id, "add", f"write after {_named(parent)}")
        return _node(tx, tree_id=parent.tree_id, parent_id=parent.id, text=text, origin=origin)


def edit(store: Store, node_id: str, text: str, carry: Sequence[str] = ()) -> Node:
    """The edited node (see edit_carrying, which also returns the copies of what it carried)."""
    return edit_carrying(store, node_id, text, carry)[0]


@retrying
def edit_carrying(store: Store, node_id: str, text: str, carry: Sequence[str] = ()) -> tuple[Node, list[Node]]:
    """Copy-on-write: the edited text becomes a new sibling (origin ``edit``); the original and its subtree stay.

    ``carry``: the path that followed the node (each id a child of the one before, the first a child of the node),
    copied below the edited sibling so that the text reads on through the edit, as Loom users expect of an edit in
    place. The copies keep their text, tokens and generation and say where they came from (``meta.carried_from``)
    and that they were written after the original text (``meta.written_after``): the ledger and the page show it.
    Editing a root (it has no parent to hold a sibling) starts a new tree from the edited text.
    """
    _text(text, "the new text")
    if len(carry) > 10_000:
        raise InvalidInput("at most 10,000 nodes can be carried by an edit")
    with store.tx() as tx:
        old = tx.lock(node_id)
        if text == old.text:
            raise InvalidInput(f"the new text is the same as node {node_id}'s: nothing to edit")
        if old.parent_id is None:
            if carry:
                raise InvalidInput("a root's edit starts a new tree: nothing below it can be carried")
            tree_id = new_id()
            root = Node(id=new_id(), tree_id=tree_id, parent_id=None, text=text, origin="edit", source_id=old.id,
                        meta={"by": current_actor()})
            tx.insert_tree(Tree(id=tree_id, root_id=root.id, title=short_title(text) or "untitled"))
            return tx.insert_node(root), []
        below = []
        parent = old.id
        for cid in carry:
            child = tx.node(cid)
            if child.parent_id != parent:
                raise InvalidInput(f"node {cid} is not a child of {parent}: what an edit carries must be the path "
                                   "that followed the edited node")
            below.append(child)
            parent = child.id
        tx.log(old.tree_id, "edit", f"edit {_named(old)}" + (f" with the {len(below)} nodes after it" if below else ""))
        edited = _node(tx, tree_id=old.tree_id, parent_id=old.parent_id, text=text, origin="edit", source_id=old.id)
        copies, parent = [], edited.id
        for n in below:  # a copy keeps who made the original (meta.by)
            copies.append(tx.insert_node(Node(
                id=new_id(), tree_id=n.tree_id, parent_id=parent, text=n.text, origin=n.origin, tokens=n.tokens,
                generation_id=n.generation_id, sample_index=n.sample_index, source_id=n.source_id, tags=n.tags,
                meta={**n.meta, "carried_from": n.id, "written_after": old.id})))
            parent = copies[-1].id
        return edited, copies


@retrying
def split(store: Store, node_id: str, offset: int) -> tuple[Node, Node]:
    """Cut a node's text at a character offset. The node keeps the head; a new child takes the tail, the token
    records after the offset, the node's children, its bookmark and a copy of its tags (the tail's full text is
    the full text the node had)."""
    with store.tx() as tx:
        node = tx.lock(node_id)
        tx.log(node.tree_id, "split", f"split {_named(node)} at character {offset}")
        return _split(tx, node, offset)


def _split(tx: Tx, node: Node, offset: int) -> tuple[Node, Node]:
    if not isinstance(offset, int) or not 0 < offset < len(node.text):
        raise InvalidInput(f"split offset must be between 1 and {len(node.text) - 1} for node {node.id} "
                           f"({len(node.text)} characters), not {offset}")
    head_toks, tail_toks = split_tokens(node.tokens, offset) if node.tokens else ((), ())
    tail = Node(id=new_id(), tree_id=node.tree_id, parent_id=node.id, text=node.text[offset:],
                origin=node.origin, tokens=tail_toks, generation_id=node.generation_id,
                sample_index=node.sample_index, source_id=node.source_id, bookmarked=node.bookmarked,
                archived=False, tags=node.tags, meta={**node.meta, "split_from": node.id})
    tx.insert_node(tail)
    tx.reparent_children(node.id, tail.id)
    tx.update_node(node.id, text=node.text[:offset], tokens=head_toks, bookmarked=False)
    return tx.node(node.id), tx.node(tail.id)


@retrying
def branch(store: Store, node_id: str, token_index: int, alternative: str) -> Node:
    """Branch from an alternative token: the node is split before token ``token_index`` and the alternative
    becomes a new child of the head (a sibling of the tail), with the alternative's logprob as its token record.
    At token 0 the alternative is simply a new sibling of the node. Returns the new node."""
    with store.tx() as tx:
        node = tx.lock(node_id)
        if not node.tokens:
            raise InvalidInput(f"node {node_id} has no token records to branch from")
        if not 0 <= token_index < len(node.tokens):
            raise InvalidInput(f"token index must be between 0 and {len(node.tokens) - 1}, not {token_index}")
        tok = node.tokens[token_index]
        alts = dict(tok.top)
        if alternative not in alts:
            raise InvalidInput(f"{alternative!r} is not among the recorded alternatives of token {token_index}")
        if alternative == "":
            raise InvalidInput("that alternative is the end of the text: there is nothing to branch with")
        if alternative == tok.text:
            raise InvalidInput(f"{alternative!r} is the token the node already has")
        tx.log(node.tree_id, "branch", f"branch {_named(node)} at token {token_index} with {alternative!r}")
        offset = sum(len(t.text) for t in node.tokens[:token_index])
        parent_id = node.parent_id if offset == 0 else _split(tx, node, offset)[0].id
        if parent_id is None:
            raise InvalidInput(f"node {node_id} is a root: there is no parent to branch under")
        alt = Token(alternative, alts[alternative], tok.top)
        return _node(tx, tree_id=node.tree_id, parent_id=parent_id, text=alternative, origin="model",
                     tokens=(alt,), generation_id=node.generation_id,
                     meta={"alternative_of": node_id, "token_index": token_index})


@retrying
def merge(store: Store, node_id: str) -> Node:
    """Join a node with its only child (the inverse of split). Refuses nodes of different origins, because the
    optimization accounting needs to know which text a person wrote."""
    with store.tx() as tx:
        node = tx.lock(node_id)
        kids = tx.children(node_id, include_archived=True)
        if len(kids) != 1:
            raise InvalidInput(f"node {node_id} has {len(kids)} children (archived included); merge needs exactly one")
        child = kids[0]
        if child.archived:
            raise InvalidInput(f"the only child of {node_id} ({child.id}) is archived: restore it before merging")
        if child.origin != node.origin:
            raise InvalidInput(f"cannot merge a {node.origin} node with a {child.origin} child: the origins differ")
        tx.log(node.tree_id, "merge", f"merge {_named(node)} with {_named(child)}")
        tokens = join_tokens(node.tokens, child.tokens)
        if node.tokens or child.tokens:
            if tokens_text(tokens) != node.text + child.text:
                tokens = ()  # one side has no token records; partial records would misattribute logprobs
        meta = {k: v for k, v in node.meta.items() if k != "split_from"}
        tx.update_node(node.id, text=node.text + child.text, tokens=tokens,
                       bookmarked=node.bookmarked or child.bookmarked, meta=meta)
        tx.add_tags(node.id, child.tags)
        tx.reparent_children(child.id, node.id)
        tx.delete_nodes([child.id])
        return tx.node(node.id)


@retrying
def set_archived(store: Store, node_id: str, archived: bool = True) -> Node:
    """Soft delete: an archived node and its subtree leave default listings but stay in the store."""
    with store.tx() as tx:
        node = tx.lock(node_id)
        if node.parent_id is None and archived:
            raise InvalidInput(f"node {node_id} is the root of tree {node.tree_id}: a root cannot be archived")
        tx.log(node.tree_id, "archive" if archived else "restore", f"{'archive' if archived else 'restore'} {_named(node)}")
        tx.update_node(node_id, archived=archived)
        return replace(node, archived=archived)


@retrying
def set_bookmark(store: Store, node_id: str, on: bool = True) -> Node:
    with store.tx() as tx:
        node = tx.lock(node_id)
        tx.log(node.tree_id, "bookmark", f"{'bookmark' if on else 'unbookmark'} {_named(node)}")
        tx.update_node(node_id, bookmarked=on)
        return replace(node, bookmarked=on)


@retrying
def tag(store: Store, node_id: str, *tags: str, remove: bool = False) -> Node:
    """Add tags to a node (or take them off with ``remove=True``)."""
    clean = [validate.tag(t) for t in tags]
    if not clean:
        raise InvalidInput("no tags given")
    with store.tx() as tx:
        node = tx.lock(node_id)
        tx.log(node.tree_id, "tag", f"{'untag' if remove else 'tag'} {_named(node)}: {', '.join(clean)}")
        (tx.remove_tags if remove else tx.add_tags)(node_id, clean)
        return tx.node(node_id)


def untag(store: Store, node_id: str, *tags: str) -> Node:
    return tag(store, node_id, *tags, remove=True)


@retrying
def set_chapter(store: Store, node_id: str, title: str | None) -> Node:
    """Name a node as the start of a chapter (pyloom's chapters), or with None take the name away."""
    title = None if title is None else validate.name(title, "a chapter's title")
    with store.tx() as tx:
        node = tx.lock(node_id)
        meta = {k: v for k, v in node.meta.items() if k != "chapter"} | ({"chapter": title} if title else {})
        tx.log(node.tree_id, "chapter", f"{'name' if title else 'unname'} chapter at {_named(node)}" +
               (f": {title}" if title else ""))
        tx.update_node(node_id, meta=meta)
        return tx.node(node_id)


@retrying
def move(store: Store, node_id: str, new_parent_id: str) -> Node:
    """Re-attach a node (with its subtree) under another node of the same tree."""
    with store.tx() as tx:
        node = tx.lock(node_id)  # with the tree locked, the cycle check below still holds when the move commits
        parent = tx.node(new_parent_id)
        if node.parent_id is None:
            raise InvalidInput(f"node {node_id} is a root: it cannot move")
        if parent.tree_id != node.tree_id:
            raise InvalidInput(f"node {new_parent_id} is in another tree ({parent.tree_id}); moves stay in a tree")
        if new_parent_id in set(tx.subtree_ids(node_id)):
            raise InvalidInput(f"moving {node_id} under {new_parent_id} would make a cycle "
                               f"({new_parent_id} is {node_id} or one of its descendants)")
        tx.log(node.tree_id, "move", f"move {_named(node)} under {_named(parent)}")
        tx.update_node(node_id, parent_id=new_parent_id)
        return replace(node, parent_id=new_parent_id)


@retrying
def delete_subtree(store: Store, node_id: str) -> int:
    """Delete a node and everything under it; undoable (the tree's log keeps the rows). Returns the count.

    A root is refused: that would be the whole tree, for good (no log survives it), which :func:`delete_tree`
    does when asked for by name, so that a shared loom cannot vanish through an ordinary delete."""
    with store.tx() as tx:
        node = tx.lock(node_id)
        if node.parent_id is None:
            raise InvalidInput(f"node {node_id} is the root of tree {node.tree_id}: deleting it would delete the "
                               f"whole tree for good; delete the tree itself for that (loomwork delete "
                               f"{node.tree_id}; DELETE /api/trees/{node.tree_id})")
        ids = tx.subtree_ids(node_id)
        tx.log(node.tree_id, "delete", f"delete {_named(node)} and {len(ids) - 1} below it")
        tx.delete_nodes(ids)
        return len(ids)


@retrying
def delete_tree(store: Store, tree_id: str) -> int:
    """Delete a whole tree for good: its nodes, log, ratings, scores and queues (nothing can undo this)."""
    with store.tx() as tx:
        tx.lock_tree(tree_id, need="owner")
        count = len(tx.tree_nodes(tree_id))
        tx.delete_tree(tree_id)
        return count


async def expand_stream(store: Store, node_id: str, backend: Backend,
                        params: SamplingParams) -> AsyncIterator[TokenEvent | list[Node]]:
    """Sample ``params.n`` children of a node, streaming tokens; the last item is the list of new nodes.

    Nothing is written until every sample is complete, so a cancelled expansion leaves no half node behind. The
    samples are stored under the node whose full text is the text the model was given: the node itself; if it was
    split meanwhile, the node that now ends with that text; if it was merged into its parent, the parent. If no node
    does (it was moved, edited in place or deleted while the model ran), they are refused with a Conflict, never
    attached to text they were not conditioned on. Steering vectors come resolved (their numbers filled in:
    expansion.py does it for the library, the CLI and the page), never looked up here.
    """
    unresolved = [s.name for s in params.steer if s.vector is None]
    if unresolved:
        raise InvalidInput(f"steering vector {unresolved[0]!r} is not resolved: expand through loomwork.expand, "
                           "which reads it from the store")
    if params.system and not backend.capabilities.chat:  # never a lever that silently does nothing
        raise InvalidInput(f"{backend.ref} is not a chat model: a system message needs openai-chat:URL#MODEL "
                           "(use the tree's memory for text a completion model reads first)")
    params = params.with_seed()
    path, memory = read_context(store, node_id)
    started = time.perf_counter()
    done: Done | None = None
    # the tree's memory comes first in what the model reads; it is recorded with the generation
    async for event in backend.stream(memory + path_text(path), params):
        if isinstance(event, Done):
            done = event
        else:
            yield event
    assert done is not None
    yield await store_samples(store, path, backend, params, memory, time.perf_counter() - started, done)


def read_context(store: Store, node_id: str) -> tuple[list[Node], str]:
    """The path to a node and its tree's memory (what a model reads before the path)."""
    with store.read() as tx:
        path = tx.path(node_id)
        return path, (tx.tree(path[0].tree_id).meta.get("settings") or {}).get("memory", "")


async def store_samples(store: Store, path: list[Node], backend: Backend, params: SamplingParams, memory: str,
                        seconds: float, done: Done, extra: dict | None = None) -> list[Node]:
    """Record one generation (its parameters, the memory, ``extra``) and store its samples below the path's end,
    off the event loop: the write may wait for other writers, and the loop serves everyone else meanwhile."""
    node = path[-1]
    precision = backend.precision()  # what the figures recorded with the tokens were computed in
    gen = Generation(id=new_id(), tree_id=node.tree_id, node_id=node.id, backend=backend.name, model=backend.model,
                     params={**params.model_dump(mode="json", exclude=set() if params.system else {"system"}),
                             **(extra or {}), **({"memory": memory} if memory else {}),
                             **({"precision": precision} if precision else {}),
                             **({"served": done.served} if done.served else {})},
                     seed=params.seed, duration_s=seconds, prompt_tokens=done.prompt_tokens,
                     completion_tokens=done.completion_tokens, created_at=utcnow())
    return await asyncio.to_thread(_store_expansion, store, [n.id for n in path], path_text(path), gen, done,
                                   backend.ref)


@retrying
def _store_expansion(store: Store, ancestry: list[str], context: str, gen: Generation, done: Done,
                     ref: str) -> list[Node]:
    node_id = ancestry[-1]
    with store.tx() as tx:
        try:
            tx.lock_tree(gen.tree_id)
        except NotFound:
            raise Conflict(f"tree {gen.tree_id} was deleted while the model generated: its "
                           f"{len(done.completions)} samples were not stored") from None
        # the deepest node of the path the model saw that still exists (the node itself, unless it was merged into
        # its parent or deleted), and from there the node whose full text is exactly what the model saw
        start = next((i for i in reversed(ancestry) if tx.exists(i)), None)
        anchor = None if start is None else _where_context_holds(tx, start, context)
        if anchor is None:
            what = "changed" if tx.exists(node_id) else "deleted"
            raise Conflict(f"node {node_id} was {what} while the model generated (moved, edited in place or "
                           f"deleted), so no node ends with the text the model saw: its {len(done.completions)} "
                           "samples were not stored")
        gen = replace(gen, node_id=anchor.id)
        tx.insert_generation(gen)
        tx.log(anchor.tree_id, "expand", f"generate {len(done.completions)} after {_named(anchor)} with {ref}")
        # a steered node says so itself (the read and tree views mark it without reading its generation)
        steered = [{"name": s["name"], "coef": s["coef"]} for s in gen.params.get("steer") or ()]
        meta = {"steered": steered} if steered else {}
        return [
            _node(tx, tree_id=anchor.tree_id, parent_id=anchor.id, text=c.text, origin="model", tokens=tuple(c.tokens),
                  generation_id=gen.id, sample_index=i, meta={"finish_reason": c.finish_reason,
                                                             **({"stopped_by": c.stopped_by} if c.stopped_by else {}),
                                                             **meta})
            for i, c in enumerate(done.completions)
        ]


def _where_context_holds(tx: Tx, node_id: str, context: str) -> Node | None:
    """The node whose full text is ``context``: ``node_id`` itself, or a descendant when a split moved the end of
    its text into a new child (depth-first, first match in creation order). None when no such node exists."""
    path = tx.path(node_id)
    stack = [(path[-1], path_text(path))]
    while stack:
        node, text = stack.pop()
        if text == context:
            return node
        if context.startswith(text):
            rest = context[len(text):]
            kids = [k for k in tx.children(node.id, include_archived=True) if rest.startswith(k.text) and k.text]
            stack.extend((k, text + k.text) for k in reversed(kids))
    return None


async def expand(store: Store, node_id: str, backend: Backend, params: SamplingParams,
                 on_token: Callable[[TokenEvent], None] | None = None) -> list[Node]:
    children: list[Node] = []
    async for event in expand_stream(store, node_id, backend, params):
        if isinstance(event, TokenEvent):
            if on_token:
                on_token(event)
        else:
            children = event
    return children


@retrying
def undo(store: Store, tree_id: str, expect: int | None = None, force: bool = False) -> dict:
    """Take back the newest operation on a tree. ``expect``: the seq you mean to undo (Conflict if someone got
    there first); ``force``: take it back even if another person did it. Returns the entry's summary
    (``seq, kind, label, actor, mine, nodes``)."""
    with store.tx() as tx:
        return tx.step(tree_id, redo=False, expect=expect, force=force)


@retrying
def redo(store: Store, tree_id: str, expect: int | None = None, force: bool = False) -> dict:
    """Replay the operation that the last undo took back (same ``expect`` and ``force`` as undo)."""
    with store.tx() as tx:
        return tx.step(tree_id, redo=True, expect=expect, force=force)


def undo_preview(store: Store, tree_id: str) -> dict:
    """``{"undo": entry | None, "redo": entry | None}``: what undo and redo would take back or replay now."""
    with store.read() as tx:
        return tx.undo_preview(tree_id)
