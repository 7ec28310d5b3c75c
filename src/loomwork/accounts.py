"""Accounts of a shared server (docs/teams.md): each person has a name and a token, shown once and stored only
as its SHA-256, and roles per tree (owner, editor, rater, viewer) and per queue (rater, reviewer).

The CLI manages accounts as the database's administrator (whoever can open the database file or URL); a server
with accounts authenticates every request by its token (``authenticate``) and runs it as that account
(store/access.py), so that each write is checked against the account's role and recorded under its name.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta, timezone

from .errors import Forbidden, InvalidInput
from .store import Store, retrying
from .store import access, journal
from .store import accounts as sql
from .store import supervision as queues_sql
from .store.access import QUEUE_ROLES, ROLES, Principal

PREFIX = "lw_"
_TOKEN = re.compile(r"lw_[A-Za-z0-9_-]{43}")  # the prefix and 32 random bytes, URL-safe base64
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


def check_name(name) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InvalidInput(f"an account name is 1 to 64 letters, digits, '.', '_', '@' or '-', starting with a "
                           f"letter or digit, not {str(name)[:80]!r}")
    return name


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def _expiry(days: float | None) -> datetime | None:
    if days is None:
        return None
    if not isinstance(days, (int, float)) or isinstance(days, bool) or not 0 < days <= 36500:
        raise InvalidInput(f"a token lasts from a moment to 36,500 days, not {days!r} days")
    return datetime.now(timezone.utc) + timedelta(days=days)


@retrying
def add(store: Store, name: str, admin: bool = False, expires_days: float | None = None) -> str:
    """Make an account; returns its token (the only time it is seen: the database keeps its hash)."""
    token = new_token()
    with store.tx() as tx:
        sql.add(tx, check_name(name), token_hash(token), admin, _expiry(expires_days))
    return token


@retrying
def rotate(store: Store, name: str, expires_days: float | None = None) -> str:
    """A new token for an account (the old one stops working at once; a revoked account is active again)."""
    token = new_token()
    with store.tx() as tx:
        sql.set_token(tx, check_name(name), token_hash(token), _expiry(expires_days))
    return token


@retrying
def revoke(store: Store, name: str) -> None:
    with store.tx() as tx:
        sql.revoke(tx, check_name(name))


def status(account: dict, now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    if account["revoked_at"] is not None:
        return "revoked"
    if account["expires_at"] is not None and account["expires_at"] <= now:
        return "expired"
    return "active"


def listing(store: Store) -> list[dict]:
    with store.read() as tx:
        rows = sql.all_accounts(tx)
    return [{**r, "status": status(r)} for r in rows]


def active_count(store: Store) -> int:
    with store.read() as tx:
        return sql.count(tx)


def authenticate(store: Store, token: str | None) -> Principal | None:
    """The account a token belongs to, or None for anything else: malformed, unknown (another server's), revoked,
    expired. One answer for all of them, so a caller learns nothing about which accounts exist."""
    if not token or not _TOKEN.fullmatch(token):
        return None
    with store.read() as tx:
        account = sql.by_hash(tx, token_hash(token))
    if account is None or status(account) != "active":
        return None
    return Principal(account["name"], bool(account["admin"]))


@retrying
def grant(store: Store, name: str, tree_id: str, role: str | None) -> list[dict]:
    """Give an account (or "*", every account) a role on a tree; ``role`` None takes its role away. Needs the
    tree's owner role when run as an account. A tree keeps at least one owner. Returns the tree's roles."""
    if name != access.EVERYONE:
        check_name(name)
    role = None if role == "none" else role
    if role is not None:
        access.check_role(role)
    if name == access.EVERYONE and role == "owner":
        raise InvalidInput("every account cannot own a tree: grant owner to a named account")
    with store.tx() as tx:
        tx.lock_tree(tree_id, need="owner")
        if name != access.EVERYONE:
            sql.get(tx, name)  # only accounts that exist get roles
        roles = sql.roles_of_tree(tx, tree_id)
        if role != "owner" and [r["account"] for r in roles if r["role"] == "owner"] == [name]:
            raise InvalidInput(f"{name} is the only owner of tree {tree_id}: make someone else owner first")
        if next((r["role"] for r in roles if r["account"] == name), None) == role:
            return roles  # nothing changes: nothing to record
        sql.grant(tx, tree_id, name, role)
        journal.bump(tx.conn, tree_id, "roles", {"account": name, "role": role})  # pages and caches hear of it
        return sql.roles_of_tree(tx, tree_id)


def sharing(store: Store, tree_id: str) -> list[dict]:
    """Who has which role on a tree (its owners see it; so does the CLI)."""
    with store.read() as tx:
        tx.tree(tree_id)
        access.require(tx.conn, tree_id, "owner")
        return sql.roles_of_tree(tx, tree_id)


@retrying
def grant_queue(store: Store, name: str, queue: str, role: str | None) -> list[dict]:
    """Place an account on an audit queue as a rater or reviewer (``role`` None: take it off). Needs the owner
    role on the queue's tree, or reviewing the queue, when run as an account."""
    check_name(name)
    role = None if role == "none" else role
    if role is not None:
        access.check_role(role, QUEUE_ROLES)
    with store.tx() as tx:
        q = queues_sql.queue(tx, queue)
        p = access.current()
        if p is not None and not p.admin and access.queue_role(tx.conn, q["id"], p.name) != "reviewer":
            if not access.allowed(tx.conn, q["filter"]["tree"], "owner"):
                raise Forbidden(f"placing people on queue {q['name']!r} is for its reviewers and its tree's owners")
        sql.get(tx, name)
        sql.grant_queue(tx, q["id"], name, role)
        return sql.roles_of_queue(tx, q["id"])


__all__ = ["ROLES", "QUEUE_ROLES", "add", "rotate", "revoke", "listing", "authenticate", "grant", "sharing",
           "grant_queue", "check_name"]
