"""SQL for process supervision: ratings, outcome labels, queues and critiques. Rows come back as plain dicts."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import Sequence

from sqlalchemy import insert, select

from ..errors import InvalidInput, NotFound
from . import access, journal
from .dialect import insert_ignoring_duplicates
from .queries import Tx
from .schema import adjudications, critiques, meta, outcomes, queue_roles, queues, ratings


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _dicts(result) -> list[dict]:
    return [{str(k): v for k, v in r._mapping.items()} for r in result]


def add_rating(tx: Tx, **row) -> None:
    tx.conn.execute(insert(ratings).values(**row, created_at=_now()))


def ratings_for(tx: Tx, *, node_ids: Sequence[str] | None = None, tree_id: str | None = None,
                queue_id: str | None = None) -> list[dict]:
    """Rating records, oldest first (history included: callers pick the latest per node, rater, question)."""
    q = select(ratings).order_by(ratings.c.created_at, ratings.c.id)
    if node_ids is not None:
        q = q.where(ratings.c.node_id.in_(list(node_ids)))
    if tree_id is not None:
        q = q.where(ratings.c.tree_id == tree_id)
    if queue_id is not None:
        q = q.where(ratings.c.queue_id == queue_id)
    return _dicts(tx.conn.execute(q))


def add_outcome(tx: Tx, **row) -> None:
    tx.conn.execute(insert(outcomes).values(**row, created_at=_now()))


def outcomes_for(tx: Tx, tree_id: str) -> list[dict]:
    return _dicts(tx.conn.execute(select(outcomes).where(outcomes.c.tree_id == tree_id)
                                  .order_by(outcomes.c.created_at, outcomes.c.id)))


def add_queue(tx: Tx, **row) -> None:
    # ON CONFLICT DO NOTHING, not check-then-insert: two people creating the same name at once get one queue
    # and one clear refusal, never a constraint error
    done = tx.conn.execute(insert_ignoring_duplicates(tx.conn, queues)
                           .values(**row, created_at=_now(), created_by=journal.current_actor()))
    if done.rowcount == 0:
        raise InvalidInput(f"a queue named {row['name']!r} exists already")
    if access.current() is not None:  # whoever makes a queue reviews it
        tx.conn.execute(insert(queue_roles).values(queue_id=row["id"], account=access.current().name, role="reviewer"))


def queue(tx: Tx, ref: str) -> dict:
    rows = _dicts(tx.conn.execute(select(queues).where((queues.c.id == ref) | (queues.c.name == ref))))
    if not rows:
        raise NotFound(f"no queue {ref!r} (see `loomwork queue list`)")
    return rows[0]


def all_queues(tx: Tx) -> list[dict]:
    return _dicts(tx.conn.execute(select(queues).order_by(queues.c.created_at)))


def add_critique(tx: Tx, **row) -> None:
    tx.conn.execute(insert(critiques).values(**row, created_at=_now()))


def critique_of(tx: Tx, critique_id: str) -> dict | None:
    rows = _dicts(tx.conn.execute(select(critiques).where(critiques.c.id == critique_id)))
    return rows[0] if rows else None


def latest_critique(tx: Tx, node_id: str) -> dict | None:
    rows = _dicts(tx.conn.execute(select(critiques).where(critiques.c.node_id == node_id)
                                  .order_by(critiques.c.created_at.desc(), critiques.c.id).limit(1)))
    return rows[0] if rows else None


def add_adjudication(tx: Tx, **row) -> None:
    tx.conn.execute(insert(adjudications).values(**row, created_at=_now()))


def adjudications_for(tx: Tx, *, tree_id: str | None = None, queue_id: str | None = None) -> list[dict]:
    """Adjudications, oldest first (the latest per node and question is the one in force)."""
    q = select(adjudications).order_by(adjudications.c.created_at, adjudications.c.id)
    if tree_id is not None:
        q = q.where(adjudications.c.tree_id == tree_id)
    if queue_id is not None:
        q = q.where(adjudications.c.queue_id == queue_id)
    return _dicts(tx.conn.execute(q))


def salt(tx: Tx) -> str:
    """This database's secret for rater pseudonyms (made on first use, kept in loomwork_meta)."""
    key = "rater_pseudonym_salt"
    found = tx.conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar_one_or_none()
    if found is None:
        tx.conn.execute(insert_ignoring_duplicates(tx.conn, meta).values(key=key, value=secrets.token_hex(16)))
        found = tx.conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar_one()
    return found
