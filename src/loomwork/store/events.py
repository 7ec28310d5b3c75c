"""Each tree's events, in order (docs/teams.md, "Live trees"): one row per change, numbered by the tree's version
after it, so a tree's events have no gaps and no two share a number (the tree's row lock orders its writers).

A subscriber asks for the events after the last one it saw. To wake subscribers without polling, a committed
change is announced: PostgreSQL's NOTIFY (sent by the transaction, delivered at commit to every server process
that LISTENs) and, within one process, the store's ``on_commit`` listeners.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import Connection, delete, insert, select, text, update

from .schema import events, presence, trees

CHANNEL = "loomwork_events"
MAX_NODES = 500  # the node ids an event lists (a bigger change says "many" and the reader reloads the tree)


def announce(conn: Connection, tree_id: str) -> None:
    """Wake the tree's subscribers when this transaction commits."""
    conn.info.setdefault("loomwork_changed", set()).add(tree_id)
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_notify(:c, :t)"), {"c": CHANNEL, "t": tree_id})


def emit(conn: Connection, tree_id: str, kind: str, data: dict, actor: str | None) -> int:
    """Count a change to a tree (its version grows by one) and record what it was. Returns its number."""
    seq = conn.execute(update(trees).where(trees.c.id == tree_id).values(version=trees.c.version + 1)
                       .returning(trees.c.version)).scalar_one_or_none()
    if seq is None:
        return 0
    nodes = data.get("nodes")
    if nodes is not None and len(nodes) > MAX_NODES:
        data = {**data, "nodes": None, "many": len(nodes)}
    conn.execute(insert(events).values(tree_id=tree_id, seq=seq, kind=kind, actor=actor, data=data,
                                       created_at=datetime.now(timezone.utc)))
    announce(conn, tree_id)
    return seq


def since(conn: Connection, tree_id: str, after: int, limit: int = 500) -> list[dict]:
    """The tree's events numbered above ``after``, oldest first."""
    rows = conn.execute(select(events).where(events.c.tree_id == tree_id, events.c.seq > after)
                        .order_by(events.c.seq).limit(limit))
    return [{"seq": r.seq, "kind": r.kind, "actor": r.actor, "data": r.data,
             "at": _aware(r.created_at).isoformat()} for r in rows]


def _aware(ts: datetime) -> datetime:
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts


def forget_tree(conn: Connection, tree_id: str) -> None:
    conn.execute(delete(events).where(events.c.tree_id == tree_id))
    conn.execute(delete(presence).where(presence.c.tree_id == tree_id))


def see(conn: Connection, tree_id: str, actor: str, client: str, node_id: str | None) -> None:
    """Someone has the tree open at ``node_id`` (None: they left); wakes the tree's subscribers."""
    conn.execute(delete(presence).where(presence.c.tree_id == tree_id, presence.c.actor == actor,
                                        presence.c.client == client))
    if node_id is not None:
        conn.execute(insert(presence).values(tree_id=tree_id, actor=actor, client=client, node_id=node_id,
                                             seen_at=datetime.now(timezone.utc)))
    announce(conn, tree_id)


def present(conn: Connection, tree_id: str, ttl_s: float) -> list[dict]:
    """Who has had the tree open within ``ttl_s`` seconds, and where (one entry per person: their latest tab)."""
    since_at = datetime.now(timezone.utc).timestamp() - ttl_s
    rows = conn.execute(select(presence).where(presence.c.tree_id == tree_id).order_by(presence.c.seen_at))
    out: dict[str, dict] = {}
    for r in rows:
        if _aware(r.seen_at).timestamp() >= since_at:
            out[r.actor] = {"actor": r.actor, "node_id": r.node_id}
    return sorted(out.values(), key=lambda p: p["actor"])


def tree_exists(conn: Connection, tree_id: str) -> bool:
    return conn.execute(select(trees.c.id).where(trees.c.id == tree_id)).first() is not None


def versions(conn: Connection, tree_ids: list[str]) -> dict[str, int]:
    """The current version of each of these trees (a deleted tree is missing)."""
    return dict(conn.execute(select(trees.c.id, trees.c.version).where(trees.c.id.in_(tree_ids))).all())
