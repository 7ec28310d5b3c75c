"""Who may do what (docs/teams.md): the principal a request acts as, roles per tree and per queue, and the one
check every write makes when it locks a tree.

Without a principal (the CLI, the library, a server without accounts) nothing is checked: whoever can open the
database can change it anyway. A server with accounts runs each request as its account (``as_principal``), and
then ``Tx.lock_tree`` refuses a write that the account's role on the tree does not allow, whatever route or
function asked for it. Reads are checked by ``require`` where a tree is read on someone's behalf.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Iterator

from sqlalchemy import Connection, select

from ..errors import Forbidden, InvalidInput
from .journal import acting_as, current_actor
from .schema import accounts, queue_roles, queues, tree_roles

ROLES = ("viewer", "rater", "editor", "owner")  # each may do what the ones before it may
QUEUE_ROLES = ("rater", "reviewer")
EVERYONE = "*"  # a tree role granted to "*" is every account's
WHAT = {"viewer": "see it", "rater": "rate its steps", "editor": "change it", "owner": "share, delete or take back "
        "other people's work in it"}


@dataclass(frozen=True)
class Principal:
    name: str
    admin: bool = False


_PRINCIPAL: ContextVar[Principal | None] = ContextVar("loomwork_principal", default=None)


def current() -> Principal | None:
    return _PRINCIPAL.get()


@contextmanager
def as_principal(principal: Principal) -> Iterator[None]:
    """Run the block as an account: its writes are checked against its roles and recorded under its name."""
    token = _PRINCIPAL.set(principal)
    try:
        with acting_as(principal.name):
            yield
    finally:
        _PRINCIPAL.reset(token)


def check_role(role: str, roles: tuple[str, ...] = ROLES) -> str:
    if role not in roles:
        raise InvalidInput(f"a role is one of {', '.join(roles)}, not {role!r}")
    return role


def rank(role: str | None) -> int:
    return ROLES.index(role) if role in ROLES else -1


def role_on(conn: Connection, tree_id: str, name: str) -> str | None:
    """The highest of the roles granted on a tree to ``name`` and to every account."""
    rows = conn.execute(select(tree_roles.c.role).where(tree_roles.c.tree_id == tree_id,
                                                        tree_roles.c.account.in_([name, EVERYONE]))).scalars()
    return max(rows, key=rank, default=None)


def queue_role(conn: Connection, queue_id: str, name: str) -> str | None:
    return conn.execute(select(queue_roles.c.role).where(queue_roles.c.queue_id == queue_id,
                                                         queue_roles.c.account == name)).scalar_one_or_none()


def allowed(conn: Connection, tree_id: str, need: str) -> bool:
    p = current()
    return p is None or p.admin or rank(role_on(conn, tree_id, p.name)) >= rank(need)


def require(conn: Connection, tree_id: str, need: str) -> None:
    """Refuse (Forbidden) unless the current principal's role on the tree is at least ``need``."""
    if allowed(conn, tree_id, need):
        return
    p = current()
    have = role_on(conn, tree_id, p.name)
    if have is None:
        raise Forbidden(f"tree {tree_id} is not shared with {p.name} (its owner can: loomwork user grant)")
    article = "an" if have[0] in "aeiou" else "a"
    raise Forbidden(f"{p.name} is {article} {have} of tree {tree_id}: to {WHAT[need]} needs the {need} role")


def visible(conn: Connection) -> set[str] | None:
    """The trees the current principal may see; None: all of them."""
    p = current()
    if p is None or p.admin:
        return None
    return set(conn.execute(select(tree_roles.c.tree_id).where(tree_roles.c.account.in_([p.name, EVERYONE])))
               .scalars())


def grant_owner(conn: Connection, tree_id: str) -> None:
    """A tree made by an account is owned by it (called where every tree is inserted); one made at the terminal
    or by the library, by the account named as its maker is (LOOMWORK_USER, else the login name), if there is one."""
    p = current()
    name = p.name if p is not None else current_actor()
    if p is not None or conn.execute(select(accounts.c.name).where(accounts.c.name == name)).first():
        conn.execute(tree_roles.insert().values(tree_id=tree_id, account=name, role="owner"))


def require_rating(conn: Connection, tree_id: str, queue_id: str | None) -> None:
    """Rating a step needs the rater role on its tree, or a place (rater or reviewer) on the queue it came from."""
    p = current()
    if queue_id is not None and p is not None and queue_role(conn, queue_id, p.name) is not None:
        return
    require(conn, tree_id, "rater")


def rater_name(given: str) -> str:
    """With accounts, a rating is always the account's own (a rater cannot rate under another's name)."""
    p = current()
    return given if p is None else p.name


def require_maker(created_by: str | None, what: str) -> None:
    """Deleting a shared record is for whoever made it, or an admin."""
    p = current()
    if p is not None and not p.admin and created_by != p.name:
        raise Forbidden(f"{what} was made by {created_by or 'someone before accounts'}: only they or an admin "
                        "may delete it")


def unreadable(conn: Connection, tree_ids: set[str]) -> set[str]:
    """Which of these trees the current principal may not read at all (see ``readable``), in one small query
    (and a second only when some are not shared with it: they may be its queues' trees)."""
    p = current()
    if p is None or p.admin or not tree_ids:
        return set()
    shared = set(conn.execute(select(tree_roles.c.tree_id).where(tree_roles.c.tree_id.in_(tree_ids),
                                                                 tree_roles.c.account.in_([p.name, EVERYONE])))
                 .scalars())
    rest = tree_ids - shared
    return rest - (readable(conn) or set()) if rest else set()


def readable(conn: Connection) -> set[str] | None:
    """The trees whose rows the current principal may read at all (None: every tree): those shared with it and
    those of the audit queues it has a place on. What it may do there is its role's business (``require``)."""
    seen = visible(conn)
    if seen is None:
        return None
    mine = conn.execute(select(queues.c.filter).join(queue_roles, queue_roles.c.queue_id == queues.c.id)
                        .where(queue_roles.c.account == current().name)).scalars()
    return seen | {f.get("tree") for f in mine if f}


def my_role(conn: Connection, tree_id: str) -> str | None:
    """The current principal's role on a tree as the page shows it (owner for everyone without accounts)."""
    p = current()
    return "owner" if p is None or p.admin else role_on(conn, tree_id, p.name)
