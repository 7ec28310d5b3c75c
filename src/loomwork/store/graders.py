"""SQL for graders (graders/): their records and the scores they gave, per node and context. Rows come back as
plain dicts."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import delete, select

from . import access, journal
from .dialect import insert_ignoring_duplicates
from .queries import Tx
from .schema import grader_scores, graders


def add_grader(tx: Tx, row: dict) -> bool:
    """Insert a grader; False when the name is taken (nothing written)."""
    return tx.conn.execute(insert_ignoring_duplicates(tx.conn, graders)
                           .values(**row, created_by=journal.current_actor())).rowcount > 0


def grader_named(tx: Tx, name: str) -> dict | None:
    row = tx.conn.execute(select(graders).where(graders.c.name == name)).first()
    return None if row is None else dict(row._mapping)


def all_graders(tx: Tx) -> list[dict]:
    return [dict(r._mapping) for r in tx.conn.execute(select(graders).order_by(graders.c.name))]


def delete_grader(tx: Tx, name: str) -> bool:
    made = tx.conn.execute(select(graders.c.created_by).where(graders.c.name == name)).first()
    if made is not None:
        access.require_maker(made.created_by, f"grader {name!r}")
    return tx.conn.execute(delete(graders).where(graders.c.name == name)).rowcount > 0


def score_of(tx: Tx, grader_id: str, node_id: str, key: str) -> dict | None:
    """A stored score (``{"score", "error"}``) of a node by a grader in a context, or None."""
    row = tx.conn.execute(select(grader_scores.c.score, grader_scores.c.error).where(
        grader_scores.c.grader_id == grader_id, grader_scores.c.node_id == node_id,
        grader_scores.c.context_key == key)).first()
    return None if row is None else {"score": row.score, "error": row.error}


def put_score(tx: Tx, grader_id: str, node_id: str, key: str, score: float | None, error: str | None) -> None:
    tx.conn.execute(insert_ignoring_duplicates(tx.conn, grader_scores).values(
        grader_id=grader_id, node_id=node_id, context_key=key, score=score, error=error,
        created_at=datetime.now(timezone.utc)))
