"""SQL for accounts and the roles granted to them on trees and queues. Rows come back as plain dicts."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import delete, insert, select, update

from ..errors import InvalidInput, NotFound
from .dialect import insert_ignoring_duplicates
from .queries import Tx
from .schema import accounts, queue_roles, tree_roles


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(ts: datetime | None) -> datetime | None:
    return None if ts is None else ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts


def add(tx: Tx, name: str, token_hash: str, admin: bool, expires_at: datetime | None) -> None:
    done = tx.conn.execute(insert_ignoring_duplicates(tx.conn, accounts).values(
        name=name, token_hash=token_hash, admin=admin, created_at=_now(), expires_at=expires_at))
    if done.rowcount == 0:
        raise InvalidInput(f"an account named {name!r} exists already (a new token: loomwork user token {name})")


def by_hash(tx: Tx, token_hash: str) -> dict | None:
    row = tx.conn.execute(select(accounts).where(accounts.c.token_hash == token_hash)).first()
    return None if row is None else _row(row)


def _row(row) -> dict:
    d = {str(k): v for k, v in row._mapping.items() if k != "token_hash"}
    for k in ("created_at", "expires_at", "revoked_at"):
        d[k] = _aware(d[k])
    return d


def get(tx: Tx, name: str) -> dict:
    row = tx.conn.execute(select(accounts).where(accounts.c.name == name)).first()
    if row is None:
        raise NotFound(f"no account {name!r} (an admin lists them: loomwork user list)")
    return _row(row)


def all_accounts(tx: Tx) -> list[dict]:
    return [_row(r) for r in tx.conn.execute(select(accounts).order_by(accounts.c.name))]


def count(tx: Tx) -> int:
    return len(tx.conn.execute(select(accounts.c.name).where(accounts.c.revoked_at.is_(None))).all())


def set_token(tx: Tx, name: str, token_hash: str, expires_at: datetime | None) -> None:
    get(tx, name)
    tx.conn.execute(update(accounts).where(accounts.c.name == name)
                    .values(token_hash=token_hash, expires_at=expires_at, revoked_at=None))


def revoke(tx: Tx, name: str) -> None:
    get(tx, name)
    tx.conn.execute(update(accounts).where(accounts.c.name == name).values(revoked_at=_now()))


def _set(tx: Tx, table, key, name: str, role: str | None) -> None:
    """Give ``name`` a role on a tree or queue (``key``: its id), replacing the one it had; None takes it away."""
    column = table.c.tree_id if "tree_id" in table.c else table.c.queue_id
    tx.conn.execute(delete(table).where(column == key, table.c.account == name))
    if role is not None:
        tx.conn.execute(insert(table).values({column.name: key, "account": name, "role": role}))


def _roles(tx: Tx, table, key) -> list[dict]:
    column = table.c.tree_id if "tree_id" in table.c else table.c.queue_id
    rows = tx.conn.execute(select(table.c.account, table.c.role).where(column == key).order_by(table.c.account))
    return [{"account": a, "role": r} for a, r in rows]


def grant(tx: Tx, tree_id: str, name: str, role: str | None) -> None:
    _set(tx, tree_roles, tree_id, name, role)


def roles_of_tree(tx: Tx, tree_id: str) -> list[dict]:
    return _roles(tx, tree_roles, tree_id)


def grant_queue(tx: Tx, queue_id: str, name: str, role: str | None) -> None:
    _set(tx, queue_roles, queue_id, name, role)


def roles_of_queue(tx: Tx, queue_id: str) -> list[dict]:
    return _roles(tx, queue_roles, queue_id)
