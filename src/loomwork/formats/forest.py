"""The shape every importer produces, its validation, and writing it to a store in one transaction.

An importer turns a file into :class:`Item` records (a key, its parent's key, text, origin, ...). ``write``
checks them as a whole (duplicate keys, missing parents, cycles, oversized texts), gives them fresh ids, and
inserts them: as new trees, one per root, or under an existing node. Nothing is written unless all is well.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Callable

from .. import validate
from ..errors import InvalidInput
from ..store import Store, Tx, retrying
from ..store import supervision as sql
from ..store.journal import current_actor
from ..tree import ORIGINS, Node, Token, Tree, new_id, short_title, tokens_text, utcnow

MAX_TEXT = validate.MAX_TEXT  # the API's limit: the same text is refused the same way on every surface


@dataclass
class Item:
    key: str
    parent: str | None
    text: str
    origin: str = "human"
    where: str = ""  # location in the source file, for error messages
    tokens: tuple[Token, ...] = ()
    bookmarked: bool = False
    archived: bool = False
    tags: tuple[str, ...] = ()
    meta: dict = field(default_factory=dict)
    created_at: datetime | None = None
    read: bool = False  # the file says its user has read the node: marked read for the person importing it
    rating: int | None = None  # -1, 0 or +1 by the person importing it, on Parsed.rating_question
    source: str | None = None  # the key of the item this one is an edit of (the node's source_id)


@dataclass
class Parsed:
    """What an importer found: the items, a title, tree-level extras to keep, and notes for the user."""

    fmt: str
    items: list[Item]
    title: str | None = None
    tree_meta: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    selected: str | None = None  # the key of the node the file had open (the page opens it)
    rating_question: str | None = None  # the question the items' ratings answer (docs/supervision.md)


@dataclass
class Report:
    fmt: str
    trees: list[str]
    roots: list[str]
    nodes: int
    notes: list[str]

    def to_json(self) -> dict:
        return {"format": self.fmt, "trees": self.trees, "roots": self.roots, "nodes": self.nodes,
                "notes": self.notes}


def refuse_unstorable_strings(data, name: str) -> None:
    """Refuse lone surrogates and NUL in any string of the file (keys and the extras a node keeps included),
    naming where: PostgreSQL cannot store them, and they are not text. Only called when the raw file has such
    an escape, so ordinary files pay nothing."""
    stack = [(data, "")]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            try:
                validate.unicode_ok(value, "a string")
            except InvalidInput as exc:
                raise InvalidInput(f"{name}: {where or 'the top level'}: {exc}") from None
        elif isinstance(value, dict):
            for k, v in value.items():
                stack.append((k, f"{where} key {k[:40]!r}"))
                stack.append((v, f"{where}.{k}" if where else str(k)))
        elif isinstance(value, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(value))


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number (JSON has no NaN or Infinity)")


def loads(text: str):
    """JSON as the standard defines it: Python's json would also read NaN and Infinity, which a database stores
    as null and no later reader expects."""
    return json.loads(text, parse_constant=_refuse_constant)


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def ident(value, fmt: str, where: str, field: str = "id") -> str:
    """A node id from a file: a string, or an integer (some tools number their nodes); anything else is refused
    rather than turned into text such as "['a']"."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InvalidInput(f"{fmt}: {where}: '{field}' must be a string, not {type(value).__name__}")


def loomwork_extras(value, fmt: str, where: str) -> dict:
    """The ``loomwork`` field that the helm and miniloom exports add to each node (origin, tags, bookmarked,
    archived: what those formats have no field for; their apps keep or drop it), checked."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{fmt}: {where}: 'loomwork' must be an object, not {type(value).__name__}")
    out = {}
    if "origin" in value:
        if value["origin"] not in ORIGINS:
            raise InvalidInput(f"{fmt}: {where}: loomwork.origin must be one of {', '.join(ORIGINS)}, "
                               f"not {value['origin']!r}")
        out["origin"] = value["origin"]
    tags = value.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise InvalidInput(f"{fmt}: {where}: loomwork.tags must be a list of strings")
    out["tags"] = tuple(tags)
    for flag in ("bookmarked", "archived"):
        if flag in value:
            if not isinstance(value[flag], bool):
                raise InvalidInput(f"{fmt}: {where}: loomwork.{flag} must be true or false")
            out[flag] = value[flag]
    return out


def _check_item(it: Item, fmt: str) -> None:
    """The API's limits, with the place in the file. Empty text is the one difference: pyloom itself writes
    nodes with no text (the demo loom has nine), so files may hold them while the API will not create them."""
    try:
        validate.text(it.text, "text", empty_ok=True)
        for tag in it.tags:
            validate.tag(tag)
        for i, tok in enumerate(it.tokens):
            if not isinstance(tok.text, str):
                raise InvalidInput(f"token {i}: its text must be a string, not {type(tok.text).__name__}")
            if tok.logprob is not None and not (_finite(tok.logprob) and tok.logprob <= 0):
                raise InvalidInput(f"token {i}: its logprob must be a finite number ≤ 0 or null, not {tok.logprob!r}")
            for alt, lp in tok.top:
                if not isinstance(alt, str) or not _finite(lp) or lp > 0:
                    raise InvalidInput(f"token {i}: alternative {alt!r} needs a finite logprob ≤ 0, not {lp!r}")
    except InvalidInput as exc:
        raise InvalidInput(f"{fmt}: {it.where}: {exc}") from None
    if it.origin not in ORIGINS:
        raise InvalidInput(f"{fmt}: {it.where}: unknown origin {it.origin!r}")


def order(items: list[Item], fmt: str) -> list[Item]:
    """Items with every parent before its children; refuses duplicates, dangling parents and cycles."""
    by_key: dict[str, Item] = {}
    for it in items:
        if it.key in by_key:
            raise InvalidInput(f"{fmt}: duplicate node id {it.key!r} ({by_key[it.key].where} and {it.where})")
        _check_item(it, fmt)
        by_key[it.key] = it
    kids: dict[str | None, list[Item]] = defaultdict(list)
    for it in items:
        if it.parent is not None and it.parent not in by_key:
            raise InvalidInput(f"{fmt}: {it.where}: parent {it.parent!r} of node {it.key!r} does not exist")
        kids[it.parent].append(it)
    out: list[Item] = []
    stack = list(reversed(kids[None]))
    while stack:
        it = stack.pop()
        out.append(it)
        stack.extend(reversed(kids.get(it.key, [])))
    if len(out) != len(items):
        stuck = next(it for it in items if it.key not in {o.key for o in out})
        raise InvalidInput(f"{fmt}: the parent links of node {stuck.key!r} ({stuck.where}) form a cycle")
    if not out:
        raise InvalidInput(f"{fmt}: the file holds no nodes")
    return out


@retrying
def write(store: Store, parsed: Parsed, under: str | None = None,
          then: Callable[[Tx, dict[str, str], dict[str, str]], None] | None = None) -> Report:
    """Insert ``parsed`` (checked as a whole first). ``then(tx, ids, trees)`` may write more in the same
    transaction, given the new id of each item key and the tree each key landed in."""
    items = order(parsed.items, parsed.fmt)
    ids = {it.key: new_id() for it in items}
    now = utcnow()
    trees: list[Tree] = []
    with store.tx() as tx:
        anchor = tx.lock(under) if under else None
        tree_of: dict[str, str] = {}
        nodes = []
        for it in items:
            if it.parent is None:
                if anchor:
                    tree_id, parent_id = anchor.tree_id, anchor.id
                else:
                    tree_id, parent_id = new_id(), None
                    title = parsed.title if parsed.title and len([i for i in items if i.parent is None]) == 1 \
                        else short_title(it.text) or parsed.fmt + " import"
                    trees.append(Tree(id=tree_id, root_id=ids[it.key], title=title, meta=parsed.tree_meta))
            else:
                tree_id, parent_id = tree_of[it.parent], ids[it.parent]
            tree_of[it.key] = tree_id
            tokens = it.tokens if it.tokens and tokens_text(it.tokens) == it.text else ()
            nodes.append(Node(id=ids[it.key], tree_id=tree_id, parent_id=parent_id, text=it.text, origin=it.origin,
                              tokens=tokens, bookmarked=it.bookmarked, archived=it.archived,
                              source_id=ids.get(it.source) if it.source is not None else None,
                              tags=tuple(dict.fromkeys(t for t in it.tags if t)),
                              meta={**it.meta, "import": {"format": parsed.fmt, "id": it.key}},
                              created_at=it.created_at or now))
        chosen = ids.get(parsed.selected) if isinstance(parsed.selected, str) else None
        for t in trees:
            if chosen and tree_of.get(parsed.selected) == t.id:
                t = replace(t, meta={**t.meta, "selected": chosen})
            tx.insert_tree(t)
        if anchor:
            tx.log(anchor.tree_id, "import", f"import {len(nodes)} {parsed.fmt} nodes under {anchor.id}")
        tx.insert_nodes(nodes)
        _reads_and_ratings(tx, parsed, items, ids, tree_of)
        if then is not None:
            then(tx, ids, tree_of)
    roots = [ids[it.key] for it in items if it.parent is None]
    return Report(parsed.fmt, [t.id for t in trees] or [anchor.tree_id], roots, len(items), parsed.notes)


def _reads_and_ratings(tx: Tx, parsed: Parsed, items: list[Item], ids: dict[str, str],
                       tree_of: dict[str, str]) -> None:
    """The file's read flags and ratings, as the person importing it (the file's user, as far as we can tell)."""
    if not any(it.read or it.rating is not None for it in items):
        return
    who = current_actor()
    read: dict[str, list[str]] = defaultdict(list)
    for it in items:
        if it.read:
            read[tree_of[it.key]].append(ids[it.key])
        if it.rating is not None:
            if it.rating not in (-1, 0, 1) or isinstance(it.rating, bool):
                raise InvalidInput(f"{parsed.fmt}: {it.where}: a rating is -1, 0 or +1, not {it.rating!r}")
            sql.add_rating(tx, id=new_id(), tree_id=tree_of[it.key], node_id=ids[it.key], rater=who,
                           question=parsed.rating_question or "Is this node good?", label=it.rating, note=None,
                           flagged=False, critique_id=None, queue_id=None)
    for tree_id, node_ids in read.items():
        tx.mark_read(tree_id, node_ids, who)
