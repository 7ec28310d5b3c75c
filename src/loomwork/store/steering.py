"""SQL for steering vectors. Rows come back as plain dicts."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import delete, select

from ..errors import InvalidInput, NotFound
from . import access, journal
from .dialect import insert_ignoring_duplicates
from .queries import Tx
from .schema import steering_vectors


def add_vector(tx: Tx, **row) -> None:
    done = tx.conn.execute(insert_ignoring_duplicates(tx.conn, steering_vectors)
                           .values(**row, created_at=datetime.now(timezone.utc), created_by=journal.current_actor()))
    if done.rowcount == 0:
        raise InvalidInput(f"a steering vector named {row['name']!r} exists already (delete it first)")


def vector(tx: Tx, name: str) -> dict:
    row = tx.conn.execute(select(steering_vectors).where(steering_vectors.c.name == name)).first()
    if row is None:
        raise NotFound(f"no steering vector {name!r} (see `loomwork steer list`)")
    return dict(row._mapping)


def vectors(tx: Tx) -> list[dict]:
    cols = [c for c in steering_vectors.c if c.name != "vector"]
    return [dict(r._mapping) for r in tx.conn.execute(select(*cols).order_by(steering_vectors.c.name))]


def delete_vector(tx: Tx, name: str) -> None:
    made = tx.conn.execute(select(steering_vectors.c.created_by).where(steering_vectors.c.name == name)).first()
    if made is None:
        raise NotFound(f"no steering vector {name!r} (see `loomwork steer list`)")
    access.require_maker(made.created_by, f"steering vector {name!r}")
    tx.conn.execute(delete(steering_vectors).where(steering_vectors.c.name == name))
