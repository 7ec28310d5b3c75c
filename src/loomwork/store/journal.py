"""The per-tree operation log behind undo and redo.

Every logged operation stores the rows it touched as they were before and after it (node rows with their tags),
so undo and redo are the same generic step: put one snapshot back. Undo refuses to run if the rows are no longer
as the operation left them, so it can never overwrite a change it does not know about.

The log is per tree and shared by everyone who works on it, so each entry records its actor (who did it). An
undo names the entry it means to take back (``expect``): when two people undo at once exactly one wins and the
other gets a Conflict. Taking back another actor's operation needs ``force`` (the page and the CLI ask first).
Redo branches are per actor: a new operation ends its own actor's redo branch, never another person's (their redo
still works, or is refused as a conflict if the new operation changed the same nodes).
"""

from __future__ import annotations

import getpass
import os
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Iterable, Iterator

from sqlalchemy import Connection, bindparam, delete, insert, select, update

from ..errors import Conflict, InvalidInput, NotFound
from ..tree import utcnow
from . import events
from .schema import node_tags, nodes, oplog, trees

MAX_ACTOR = 64
_ACTOR: ContextVar[str | None] = ContextVar("loomwork_actor", default=None)


def clean_actor(name: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > MAX_ACTOR or not name.isprintable():
        raise InvalidInput(f"a name must be 1 to {MAX_ACTOR} printable characters, not {name!r}")
    return name


def default_actor() -> str:
    """LOOMWORK_USER, else the operating-system user: the CLI and library act as this person. A LOOMWORK_USER
    that is not a valid name is an error (two different bad names must not become the same person)."""
    chosen = os.environ.get("LOOMWORK_USER")
    if chosen is not None:  # set but empty is an error too (docs/limits.md), never silently the login name
        try:
            return clean_actor(chosen)
        except InvalidInput as exc:
            raise InvalidInput(f"LOOMWORK_USER: {exc}") from None
    try:
        return clean_actor(getpass.getuser())
    except (InvalidInput, KeyError, OSError):
        return "unknown"


def current_actor() -> str:
    return _ACTOR.get() or default_actor()


@contextmanager
def acting_as(name: str) -> Iterator[None]:
    """Attribute the operations logged inside the block to ``name`` (the web server sets it per request)."""
    token = _ACTOR.set(clean_actor(name))
    try:
        yield
    finally:
        _ACTOR.reset(token)

Snapshot = dict[str, dict | None]  # node id -> row (with "tags") or None for "did not exist"


def snapshot(conn: Connection, ids: Iterable[str]) -> Snapshot:
    ids = list(dict.fromkeys(ids))
    out: Snapshot = {i: None for i in ids}
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        for row in conn.execute(select(nodes).where(nodes.c.id.in_(chunk))):
            d = {str(k): v for k, v in row._mapping.items()}  # plain str keys (SQLAlchemy's are str subclasses)
            d["created_at"] = _utc(d["created_at"]).isoformat()
            d["tags"] = []
            out[row.id] = d
        for node_id, tag in conn.execute(select(node_tags.c.node_id, node_tags.c.tag).where(node_tags.c.node_id.in_(chunk))):
            out[node_id]["tags"].append(tag)
    for d in out.values():
        if d:
            d["tags"].sort()
    return out


def _utc(ts: datetime) -> datetime:
    """SQLite hands back naive timestamps (they are UTC), PostgreSQL aware ones in the session's time zone."""
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


def _comparable(d: dict | None) -> dict | None:
    if d is None:
        return None
    # seq: an internal ordering key (a row that undo put back may carry a new one, see restore); created_at: the
    # same instant, whichever database wrote the snapshot (a backup moves a log from PostgreSQL to SQLite)
    return {**{k: v for k, v in d.items() if k != "seq"},
            "created_at": _utc(datetime.fromisoformat(d["created_at"]))}


def same(a: Snapshot, b: Snapshot) -> bool:
    """Whether two snapshots hold the same rows (see _comparable)."""
    return a.keys() == b.keys() and all(_comparable(a[i]) == _comparable(b[i]) for i in a)


def _missing_parents(conn: Connection, snap: Snapshot) -> list[str]:
    """The parents that rows ``snap`` puts back would hang from but that will not exist: deleted since by an
    operation whose snapshot did not include these rows (a redone child under a parent pruned meanwhile)."""
    present = {i for i, d in snap.items() if d}
    parents = {d["parent_id"] for d in snap.values() if d and d["parent_id"]} - present
    removed = {i for i, d in snap.items() if d is None}
    look = list(parents - removed)
    found = set(conn.execute(select(nodes.c.id).where(nodes.c.id.in_(look))).scalars()) if look else set()
    return sorted((parents & removed) | (set(look) - found))


def _new_children(conn: Connection, snap: Snapshot) -> list[str]:
    """The rows ``snap`` deletes that other nodes hang from now: children added since by an operation whose
    snapshot did not include these rows (a delete redone after someone wrote under the node)."""
    gone = [i for i, d in snap.items() if d is None]
    if not gone:
        return []
    rows = conn.execute(select(nodes.c.id, nodes.c.parent_id).where(nodes.c.parent_id.in_(gone)))
    return sorted({parent for node, parent in rows if node not in snap})


def restore(conn: Connection, snap: Snapshot) -> None:
    """Make the rows named in ``snap`` exactly as it says: update those that exist, insert the missing, delete
    those it marks absent. Updates come before deletes so no parent link ever points at a deleted row."""
    current = snapshot(conn, snap)
    present = [d for d in snap.values() if d]
    inserted = [d for d in present if current[d["id"]] is None]
    gone = [i for i, d in snap.items() if d is None and current[i] is not None]
    if inserted:  # parents may be among the inserted rows: link them in the update below
        seqs = [d["seq"] for d in inserted]
        taken = {r[0] for r in conn.execute(select(nodes.c.seq).where(nodes.c.seq.in_(seqs)))}
        # since schema v5 a seq is never reused; a log written before it may name one that a newer node has
        keep = [{**_row(d), "parent_id": None} for d in inserted if d["seq"] not in taken]
        fresh = [{k: v for k, v in _row(d).items() if k != "seq"} | {"parent_id": None}
                 for d in inserted if d["seq"] in taken]
        for rows in (keep, fresh):
            if rows:
                conn.execute(insert(nodes), rows)
    if present:
        cols = [c.name for c in nodes.columns if c.name not in ("seq", "id")]
        stmt = update(nodes).where(nodes.c.id == bindparam("b_id")).values({c: bindparam(c) for c in cols})
        conn.execute(stmt, [{"b_id": d["id"], **{c: _row(d)[c] for c in cols}} for d in present])
    conn.execute(delete(node_tags).where(node_tags.c.node_id.in_(list(snap))))
    tags = [{"node_id": d["id"], "tag": t} for d in present for t in d["tags"]]
    if tags:
        conn.execute(insert(node_tags), tags)
    if gone:
        conn.execute(delete(nodes).where(nodes.c.id.in_(gone)))


def _row(d: dict) -> dict:
    row = {k: v for k, v in d.items() if k != "tags"}
    row["created_at"] = datetime.fromisoformat(d["created_at"])
    return row


class Journal:
    """Collects the before-state of every row an operation touches, then writes one oplog entry."""

    def __init__(self, conn: Connection, tree_id: str, kind: str, label: str):
        self.conn, self.tree_id, self.kind, self.label = conn, tree_id, kind, label
        self.before: Snapshot = {}

    def touch(self, ids: Iterable[str]) -> None:
        new = [i for i in ids if i not in self.before]
        if new:
            self.before.update(snapshot(self.conn, new))

    def write(self) -> int | None:
        if not self.before:
            return None
        after = snapshot(self.conn, self.before)
        if same(after, self.before):
            return None  # nothing actually changed: nothing to undo
        # A new operation ends its actor's redo branch (entries from before v5 belong to anyone): replaying them on
        # top of it would be a different history. Other people's undone entries stay theirs to redo.
        me = current_actor()
        self.conn.execute(delete(oplog).where(oplog.c.tree_id == self.tree_id, oplog.c.undone == True,  # noqa: E712
                                              (oplog.c.actor == me) | oplog.c.actor.is_(None)))
        res = self.conn.execute(insert(oplog).values(tree_id=self.tree_id, kind=self.kind, label=self.label,
                                                     before=self.before, after=after, undone=False,
                                                     created_at=utcnow(), actor=current_actor()))
        entry = res.inserted_primary_key[0]
        bump(self.conn, self.tree_id, self.kind, {"label": self.label, "entry": entry, "nodes": sorted(after)})
        return entry


def _summary(entry) -> dict:
    actor = entry.actor
    return {"seq": entry.seq, "kind": entry.kind, "label": entry.label, "actor": actor,
            "mine": actor is None or actor == current_actor(),  # entries from before v5 belong to anyone
            "created_at": _utc(entry.created_at).isoformat()}


def next_step(conn: Connection, tree_id: str, redo: bool):
    """The entry an undo would take back (the newest active one, whoever did it) or a redo would replay (the
    oldest undone one of the current actor: the last one they undid; else the oldest undone one of anyone)."""
    q = select(oplog).where(oplog.c.tree_id == tree_id, oplog.c.undone == redo)
    if not redo:
        return conn.execute(q.order_by(oplog.c.seq.desc()).limit(1)).first()
    mine = q.where((oplog.c.actor == current_actor()) | oplog.c.actor.is_(None))
    return conn.execute(mine.order_by(oplog.c.seq).limit(1)).first() or \
        conn.execute(q.order_by(oplog.c.seq).limit(1)).first()


def preview(conn: Connection, tree_id: str) -> dict:
    """What undo and redo would do now, for the page's buttons and ``loomwork undo --dry-run``."""
    return {verb: (_summary(e) if (e := next_step(conn, tree_id, verb == "redo")) is not None else None)
            for verb in ("undo", "redo")}


def step(conn: Connection, tree_id: str, redo: bool, expect: int | None = None, force: bool = False) -> dict:
    """Undo the newest active entry of a tree, or redo the oldest undone one. Returns the entry's summary.

    ``expect``: the seq the caller means (Conflict if another is next now). Another actor's entry needs ``force``."""
    verb = "redo" if redo else "undo"
    entry = next_step(conn, tree_id, redo)
    if entry is None:
        if expect is not None:
            raise Conflict(f"cannot {verb} #{expect}: someone else already did, and there is nothing left to {verb}")
        raise InvalidInput(f"nothing to {verb} in tree {tree_id}")
    summary = _summary(entry)
    if expect is not None and entry.seq != expect:
        raise Conflict(f"cannot {verb} #{expect}: the tree changed meanwhile, and the next {verb} is now "
                       f"#{entry.seq} ({entry.label}, by {entry.actor or 'unknown'})")
    if not summary["mine"] and not force:
        raise Conflict(f"the next {verb} would {'replay' if redo else 'take back'} {entry.actor}'s operation "
                       f"#{entry.seq} ({entry.label}), not yours; {verb} it anyway with --force (API: \"force\": true)")
    before, target = (entry.before, entry.after) if redo else (entry.after, entry.before)
    if not same(snapshot(conn, before), before):
        raise Conflict(f"cannot {verb} {entry.kind}: the nodes it changed were changed since by something outside "
                       "the operation log")
    lost = _missing_parents(conn, target)
    if lost:
        raise Conflict(f"cannot {verb} {entry.kind}: it would put back nodes under {', '.join(lost)}, deleted since "
                       "by another operation")
    held = _new_children(conn, target)
    if held:
        raise Conflict(f"cannot {verb} {entry.kind}: it would delete {', '.join(held)}, under which another operation "
                       "has written since")
    restore(conn, target)
    conn.execute(update(oplog).where(oplog.c.seq == entry.seq).values(undone=not redo))
    bump(conn, tree_id, verb, {"label": entry.label, "entry": entry.seq, "of": entry.actor, "nodes": sorted(target)})
    return {**summary, "nodes": sorted(target)}


def history(conn: Connection, tree_id: str) -> list[dict]:
    rows = conn.execute(select(oplog.c.seq, oplog.c.kind, oplog.c.label, oplog.c.undone, oplog.c.created_at,
                               oplog.c.actor).where(oplog.c.tree_id == tree_id).order_by(oplog.c.seq))
    return [{**_summary(r), "undone": bool(r.undone)} for r in rows]


def bump(conn: Connection, tree_id: str, kind: str, data: dict) -> int:
    """Count a change to the tree and record it as the tree's next event (store/events.py)."""
    return events.emit(conn, tree_id, kind, data, current_actor())


def version(conn: Connection, tree_id: str) -> int:
    """A counter that grows with every change to the tree (for clients that watch it)."""
    v = conn.execute(select(trees.c.version).where(trees.c.id == tree_id)).scalar_one_or_none()
    if v is None:
        raise NotFound(f"no tree with id {tree_id!r}")
    return int(v)
