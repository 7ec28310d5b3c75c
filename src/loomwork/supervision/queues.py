"""Audit queues: which steps to audit, with which questions, and the blinded view a rater gets of each.

Blinding: the view of a step holds the step and its ancestors only. No descendant text, no child counts, no
outcome labels, no bookmarks or tags (they reveal how things turned out), no other raters' labels — unless the
queue was created unblinded.
"""

from __future__ import annotations

import hashlib
import random

from .. import validate
from ..errors import InvalidInput
from ..store import Store, access, retrying
from ..store import supervision as sql
from ..tree import ORIGINS, Node, new_id
from .membership import assigned, get_queue, is_item, keeps as _keeps, raters
from .ratings import DEFAULT_QUESTIONS, current

__all__ = ["assigned", "get_queue", "is_item", "raters"]  # the queue's membership rules live in membership.py (ratings check them too)

CRITIQUE_MODES = ("off", "on", "half")


MAX_DEPTH = 1_000_000


@retrying
def create_queue(store: Store, name: str, *, tree: str | None = None, subtree: str | None = None,
                 tag: str | None = None, origin: str | None = None, min_depth: int | None = None,
                 max_depth: int | None = None, questions: list[str] | None = None, blinded: bool = True,
                 critiques: str = "off", critic: str | None = None, seed: int | None = None,
                 overlap: int | None = None) -> dict:
    """``overlap``: give each step to this many of the queue's raters (its accounts with the rater role), so that
    every step is rated by k people and each rater rates about k/R of the steps; None: every rater rates all."""
    name = validate.name(name or "", "a queue's name")
    if origin is not None and origin not in ORIGINS:
        raise InvalidInput(f"origin must be one of {', '.join(ORIGINS)}, not {origin!r}")
    if critiques not in CRITIQUE_MODES:
        raise InvalidInput(f"critiques must be one of {', '.join(CRITIQUE_MODES)}, not {critiques!r}")
    questions = [validate.name(q, "a question", 1000) for q in (questions or DEFAULT_QUESTIONS)
                 if not isinstance(q, str) or q.strip()]
    if not questions:
        raise InvalidInput("a queue needs at least one question")
    tag = None if tag is None else validate.tag(tag)
    critic = None if critic is None else validate.name(critic, "the critic model")
    for what, depth in (("min_depth", min_depth), ("max_depth", max_depth)):
        if depth is not None and (not isinstance(depth, int) or isinstance(depth, bool) or not 0 <= depth <= MAX_DEPTH):
            raise InvalidInput(f"{what} must be a whole number from 0 to {MAX_DEPTH:,}, not {depth!r}")
    if min_depth is not None and max_depth is not None and min_depth > max_depth:
        raise InvalidInput(f"min_depth {min_depth} is above max_depth {max_depth}: the queue would be empty")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63):
        raise InvalidInput(f"the seed must be a whole number from 0 to 2**63 - 1, not {seed!r}")
    if overlap is not None and (not isinstance(overlap, int) or isinstance(overlap, bool) or not 1 <= overlap <= 100):
        raise InvalidInput(f"the overlap is how many raters see each step, 1 to 100, not {overlap!r}")
    if tree is None and subtree is None:
        raise InvalidInput("a queue needs a tree or a subtree to draw its steps from")
    if subtree is not None:
        tree = store.node(subtree).tree_id
    store.tree(tree)
    row = dict(id=new_id(), name=name, blinded=blinded, critiques=critiques, critic=critic,
               filter={"tree": tree, "subtree": subtree, "tag": tag, "origin": origin, "min_depth": min_depth,
                       "max_depth": max_depth},
               questions=questions, seed=random.randrange(2**31) if seed is None else seed, overlap=overlap)
    with store.tx() as tx:
        tx.lock_tree(tree, need="owner")  # a queue sends the tree's steps to raters: the owner's decision
        sql.add_queue(tx, **row)
    return get_queue(store, row["id"])


def list_queues(store: Store) -> list[dict]:
    """Every queue, or with accounts those on trees the account may read (shared with it, or its own queues)."""
    with store.read() as tx:
        seen = access.readable(tx.conn)
        return [q for q in sql.all_queues(tx) if seen is None or q["filter"].get("tree") in seen]


def items(store: Store, queue: dict) -> list[str]:
    """The steps of a queue (never a root: a root is the problem, not a step), in tree order."""
    f = queue["filter"]
    with store.read() as tx:
        nodes = tx.tree_nodes(f["tree"])
        scope = set(tx.subtree_ids(f["subtree"])) - {f["subtree"]} if f.get("subtree") else None
    by_id = {n.id: n for n in nodes}
    depth: dict[str, int | None] = {}  # None: archived, or below an archived node

    def depth_if_visible(node: Node) -> int | None:  # memoized walk up: linear in the tree, however deep
        trail, cur = [], node
        while cur.id not in depth:
            if cur.parent_id is None:
                depth[cur.id] = 0
            elif cur.archived:
                depth[cur.id] = None
            else:
                trail.append(cur)
                cur = by_id[cur.parent_id]
        d = depth[cur.id]
        for m in reversed(trail):
            d = None if d is None else d + 1
            depth[m.id] = d
        return depth[node.id]

    return [n.id for n in nodes if n.parent_id is not None and (scope is None or n.id in scope)
            and _keeps(f, n, depth_if_visible(n))]


def order_for(queue: dict, rater: str, ids: list[str]) -> list[str]:
    """A random order (to avoid position effects), fixed per queue and rater so that it survives restarts."""
    rng = random.Random(f"{queue['seed']}:{rater}")
    ids = list(ids)
    rng.shuffle(ids)
    return ids


def shows_critique(queue: dict, node_id: str) -> bool:
    if queue["critiques"] == "half":  # a fixed coin per item, so the comparison groups are stable
        return hashlib.sha256(f"{queue['seed']}:{node_id}".encode()).digest()[0] % 2 == 0
    return queue["critiques"] == "on"


def mine(store: Store, queue: dict, rater: str, ids: list[str]) -> list[str]:
    """The steps of ``ids`` that this rater is to rate: all of them, unless the queue has an overlap and raters
    placed on it: then the ones given to this rater (none for anyone else, a reviewer say, who adjudicates)."""
    crew = raters(store, queue) if queue.get("overlap") else []
    if not crew:
        return ids
    return [i for i in ids if rater in assigned(queue, i, crew)]  # (none for someone not on the queue)


def progress(store: Store, queue: dict, rater: str, ids: list[str] | None = None) -> dict:
    ids = mine(store, queue, rater, items(store, queue) if ids is None else ids)
    with store.read() as tx:
        done_keys = current(sql.ratings_for(tx, queue_id=queue["id"]))
    done = [i for i in ids if all((i, rater, q) in done_keys for q in queue["questions"])]
    return {"total": len(ids), "done": len(done), "remaining": [i for i in order_for(queue, rater, ids) if i not in done]}


def next_item(store: Store, queue: dict, rater: str) -> str | None:
    """The next step this rater has not rated on every question yet, or None when the queue is done."""
    remaining = progress(store, queue, rater)["remaining"]
    return remaining[0] if remaining else None


def audit_view(store: Store, queue: dict, node_id: str, rater: str) -> dict:
    """What a rater may see of one step. Blinded (the default): the step and its context, nothing after it."""
    ids = items(store, queue)
    if node_id not in set(ids):
        raise InvalidInput(f"node {node_id} is not an item of queue {queue['name']!r}")
    path = store.path(node_id)
    step = path[-1]
    prog = progress(store, queue, rater, ids)
    view = {
        "queue": {"id": queue["id"], "name": queue["name"], "questions": queue["questions"], "blinded": queue["blinded"]},
        "step": {"id": step.id, "text": step.text, "origin": step.origin},
        "context": [{"text": n.text, "origin": n.origin} for n in path[:-1]],
        "progress": {"total": prog["total"], "done": prog["done"]},
        "critique": None,
    }
    if shows_critique(queue, node_id):
        with store.read() as tx:
            c = sql.latest_critique(tx, node_id)
        view["critique"] = {"id": c["id"], "text": c["text"], "model": c["model"]} if c else {"pending": True}
    with store.read() as tx:
        mine = current([r for r in sql.ratings_for(tx, node_ids=[node_id]) if r["rater"] == rater])
    view["my_ratings"] = {q: r["label"] for (_n, _r, q), r in mine.items()}
    if not queue["blinded"]:
        with store.read() as tx:
            view["after"] = {"children": [c.text for c in tx.children(node_id)], "tags": list(step.tags),
                             "bookmarked": step.bookmarked,
                             "outcomes": [o["label"] for o in sql.outcomes_for(tx, step.tree_id) if o["node_id"] == node_id],
                             "others": [{"rater": r["rater"], "question": r["question"], "label": r["label"]}
                                        for r in current(sql.ratings_for(tx, node_ids=[node_id])).values()
                                        if r["rater"] != rater]}
    return view
