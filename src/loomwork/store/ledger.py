"""SQL for the ledger's records: people's and graders' choices (curation.py) and the scores the ledger caches per
node, model and context (ledger/writing.py, ledger/model_kl.py). Functions over a transaction, as the other areas'
SQL (supervision.py, graders.py)."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import insert, select

from . import journal
from .dialect import insert_ignoring_duplicates
from .queries import Tx
from .schema import choices, scores


def insert_choice(tx: Tx, choice_id: str, tree_id: str, parent_id: str, chosen_id: str, candidates: list[str],
                  acceptable: list[str] | None, grader: str | None = None, pressure: dict | None = None) -> None:
    tx.conn.execute(insert(choices).values(id=choice_id, tree_id=tree_id, parent_id=parent_id, chosen_id=chosen_id,
                                           candidates=candidates, acceptable=acceptable,
                                           created_at=datetime.now(timezone.utc), grader=grader, pressure=pressure,
                                           actor=journal.current_actor()))
    journal.bump(tx.conn, tree_id, "choice", {"nodes": [chosen_id], "grader": grader})


def choices_of(tx: Tx, tree_id: str) -> list:
    """Every recorded choice in a tree, oldest first (rows with parent_id, chosen_id, candidates, acceptable)."""
    return list(tx.conn.execute(select(choices).where(choices.c.tree_id == tree_id)
                                .order_by(choices.c.created_at, choices.c.id)))


def score(tx: Tx, node_id: str, model: str, key: str) -> list[dict] | None:
    row = tx.conn.execute(select(scores.c.logprobs).where(
        scores.c.node_id == node_id, scores.c.model == model, scores.c.text_hash == key)).first()
    return None if row is None else row[0]


def put_score(tx: Tx, node_id: str, model: str, key: str, logprobs: list[dict]) -> None:
    """Cache a score; two clients scoring the same node at once both succeed (the first one's row stays)."""
    row = dict(node_id=node_id, model=model, text_hash=key, logprobs=logprobs, created_at=datetime.now(timezone.utc))
    tx.conn.execute(insert_ignoring_duplicates(tx.conn, scores).values(**row))
