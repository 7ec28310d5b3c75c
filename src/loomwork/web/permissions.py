"""Who may call which route, in one table (docs/teams.md). Checked before a route runs, on a server with
accounts; the library checks every write again where it locks the tree (store/access.py), so a route this table
gets wrong still cannot change what the account's role does not allow.

A rule names what a route acts on and the least role it needs:
- ``("tree", ROLE)`` / ``("node", ROLE)``: the tree in the path, or the tree of the node in the path;
- ``("queue", "member")``: the queue in the path: a rater or reviewer on it, or a rater of its tree;
  ``("queue", "reviewer")``: its reviewers and its tree's owners;
- ``("account",)``: any account; what the route lists or makes is filtered or checked by the library
  (trees shared with it, the maker of a steering vector, the owner of a queue's tree);
- ``("public",)``: no account needed (the sign-in page).
A route missing from the table is refused (a test checks that every route has a rule).
"""

from __future__ import annotations

import threading
import time

import anyio
from fastapi import Request

from ..errors import Forbidden
from ..store import access
from ..store import supervision as queue_sql
from .auth import limit
from .common import store_of

V, R, E, O = "viewer", "rater", "editor", "owner"
RULES: dict[tuple[str, str], tuple[str, ...]] = {
    ("GET", "/api/config"): ("account",),
    ("GET", "/api/models"): ("account",),
    ("GET", "/api/models/stats"): ("account",),
    ("GET", "/api/trees"): ("account",),
    ("POST", "/api/trees"): ("account",),
    ("GET", "/api/trees/{tree_id}"): ("tree", V),
    ("GET", "/api/trees/{tree_id}/settings"): ("tree", V),
    ("PUT", "/api/trees/{tree_id}/settings"): ("tree", E),
    ("PATCH", "/api/trees/{tree_id}/settings"): ("tree", E),
    ("GET", "/api/trees/{tree_id}/version"): ("tree", V),
    ("GET", "/api/trees/{tree_id}/history"): ("tree", V),
    ("GET", "/api/trees/{tree_id}/undo"): ("tree", V),
    ("POST", "/api/trees/{tree_id}/undo"): ("tree", E),
    ("POST", "/api/trees/{tree_id}/redo"): ("tree", E),
    ("GET", "/api/trees/{tree_id}/bits"): ("tree", V),
    ("GET", "/api/trees/{tree_id}/events"): ("tree", V),
    ("POST", "/api/trees/{tree_id}/presence"): ("tree", V),
    ("GET", "/api/trees/{tree_id}/reads"): ("tree", V),
    ("POST", "/api/trees/{tree_id}/reads"): ("tree", V),
    ("GET", "/api/trees/{tree_id}/roles"): ("tree", O),
    ("PUT", "/api/trees/{tree_id}/roles"): ("tree", O),
    ("DELETE", "/api/trees/{tree_id}"): ("tree", O),
    ("GET", "/api/nodes/{node_id}"): ("node", V),
    ("GET", "/api/nodes/{node_id}/path"): ("node", V),
    ("GET", "/api/nodes/{node_id}/children"): ("node", V),
    ("GET", "/api/nodes/{node_id}/outline"): ("node", V),
    ("GET", "/api/nodes/{node_id}/step"): ("node", V),
    ("GET", "/api/nodes/{node_id}/subtree"): ("node", V),
    ("GET", "/api/nodes/{node_id}/bits"): ("node", V),
    ("GET", "/api/nodes/{node_id}/bits/stream"): ("node", V),
    ("GET", "/api/nodes/{node_id}/next"): ("node", V),
    ("GET", "/api/nodes/{node_id}/mass-tree"): ("node", V),
    ("GET", "/api/nodes/{node_id}/logit-lens"): ("node", V),
    ("POST", "/api/nodes/{node_id}/children"): ("node", E),
    ("POST", "/api/nodes/{node_id}/edit"): ("node", E),
    ("POST", "/api/nodes/{node_id}/split"): ("node", E),
    ("POST", "/api/nodes/{node_id}/merge"): ("node", E),
    ("POST", "/api/nodes/{node_id}/archive"): ("node", E),
    ("POST", "/api/nodes/{node_id}/bookmark"): ("node", E),
    ("POST", "/api/nodes/{node_id}/tags"): ("node", E),
    ("POST", "/api/nodes/{node_id}/chapter"): ("node", E),
    ("POST", "/api/nodes/{node_id}/move"): ("node", E),
    ("POST", "/api/nodes/{node_id}/branch"): ("node", E),
    ("POST", "/api/nodes/{node_id}/choose"): ("node", E),
    ("POST", "/api/nodes/{node_id}/expand"): ("node", E),
    ("POST", "/api/nodes/{node_id}/sweep"): ("node", E),
    ("POST", "/api/nodes/{node_id}/bon"): ("node", E),
    ("POST", "/api/nodes/{node_id}/grow"): ("node", E),
    ("POST", "/api/nodes/{node_id}/goodhart"): ("node", E),
    ("DELETE", "/api/nodes/{node_id}"): ("node", E),
    ("GET", "/api/search"): ("account",),
    ("GET", "/api/resolve"): ("account",),
    ("GET", "/api/queues"): ("account",),
    ("POST", "/api/queues"): ("account",),
    ("GET", "/api/queues/{queue}/next"): ("queue", "member"),
    ("GET", "/api/queues/{queue}/items/{node_id}"): ("queue", "member"),
    ("POST", "/api/queues/{queue}/items/{node_id}/critique"): ("queue", "member"),
    ("POST", "/api/queues/{queue}/ratings"): ("queue", "member"),
    ("GET", "/api/queues/{queue}/summary"): ("queue", "reviewer"),
    ("PUT", "/api/queues/{queue}/roles"): ("queue", "reviewer"),
    ("GET", "/api/queues/{queue}/disagreements"): ("queue", "reviewer"),
    ("POST", "/api/queues/{queue}/adjudications"): ("queue", "reviewer"),
    ("GET", "/api/suites"): ("account",),
    ("POST", "/api/compare"): ("account",),
    ("GET", "/api/steering"): ("account",),
    ("POST", "/api/steering"): ("account",),
    ("GET", "/api/steering/{name}"): ("account",),
    ("DELETE", "/api/steering/{name}"): ("account",),
    ("GET", "/api/graders"): ("account",),
    ("POST", "/api/graders"): ("account",),
    ("GET", "/api/graders/{name}"): ("account",),
    ("GET", "/api/adapters"): ("account",),
    ("GET", "/api/adapters/{name}"): ("account",),
    ("DELETE", "/api/adapters/{name}"): ("account",),
    ("POST", "/api/adapters"): ("account",),
    ("POST", "/api/adapters/{name}/stop"): ("account",),
    ("GET", "/api/adapters/{name}/events"): ("account",),
    ("GET", "/api/me"): ("account",),
    ("GET", "/"): ("account",),
    ("GET", "/audit"): ("account",),
    ("GET", "/compare"): ("account",),
    ("GET", "/tune"): ("account",),
    ("GET", "/login"): ("public",),
    ("GET", "/logout"): ("public",),
}


def route_of(request: Request) -> tuple[str, str]:
    return (request.method if request.method != "HEAD" else "GET", getattr(request.scope.get("route"), "path", ""))


async def authorize(request: Request) -> None:
    """The app's dependency: refuse (403) what the caller's account may not do, then (429) model work over its
    allowance. A server without accounts has no principal, and every rule passes. Roles are looked up in the
    database once and then remembered (``Roles``), so most requests pass without a query."""
    principal = access.current()
    if principal is not None and not principal.admin:
        rule = RULES.get(route_of(request))
        if rule is None:
            raise Forbidden(f"{request.method} {request.url.path} has no access rule: refused")
        if rule[0] in ("tree", "node"):
            roles: Roles = request.app.state.roles
            key = request.path_params["tree_id" if rule[0] == "tree" else "node_id"]
            role = roles.known(principal.name, key, rule[0])
            if role is False:
                role = await anyio.to_thread.run_sync(roles.look_up, store_of(request), principal.name, key, rule[0])
            if access.rank(role) < access.rank(rule[1]):
                await anyio.to_thread.run_sync(_refuse, store_of(request), request, rule)
        elif rule[0] == "queue":
            await anyio.to_thread.run_sync(_check_queue, store_of(request), request, principal, rule)
    limit(request, route_of(request))


def _refuse(store, request: Request, rule: tuple[str, ...]) -> None:
    """Raise the refusal with its words (read afresh: the remembered role may be a moment old)."""
    params = request.path_params
    with store.read() as tx:
        tree_id = params["tree_id"] if rule[0] == "tree" else tx.tree_of(params["node_id"])
        access.require(tx.conn, tree_id, rule[1])


class Roles:
    """What an account's role on a tree was a moment ago (for ``TTL_S``, as a token is remembered), and which tree
    each node is in (which never changes). A role remembered a moment too long can let a route start, never a
    write or a read: the library checks again, in the database, where each write locks its tree and each
    transaction reads rows (store/access.py)."""

    TTL_S = 2.0
    MAX = 100_000

    def __init__(self):
        self._roles: dict[tuple[str, str], tuple[str | None, float]] = {}
        self._trees: dict[str, str] = {}
        self._lock = threading.Lock()

    def known(self, name: str, key: str, kind: str):
        """The remembered role (None: none), or False when it is not known."""
        with self._lock:
            tree_id = key if kind == "tree" else self._trees.get(key)
            hit = self._roles.get((name, tree_id)) if tree_id else None
        if hit is None or time.monotonic() - hit[1] > self.TTL_S:
            return False
        return hit[0]

    def look_up(self, store, name: str, key: str, kind: str) -> str | None:
        with store.read() as tx:
            tree_id = key if kind == "tree" else tx.tree_of(key)
            tx.tree(tree_id)  # 404 for a tree that does not exist
            role = access.role_on(tx.conn, tree_id, name)
        with self._lock:
            if len(self._roles) > self.MAX:
                self._roles.clear()
            if len(self._trees) > self.MAX:
                self._trees.clear()
            if kind == "node":
                self._trees[key] = tree_id
            self._roles[(name, tree_id)] = (role, time.monotonic())
        return role


def _check_queue(store, request: Request, principal, rule: tuple[str, ...]) -> None:
    params = request.path_params
    with store.read() as tx:
        q = queue_sql.queue(tx, params["queue"])
        role = access.queue_role(tx.conn, q["id"], principal.name)
        tree = q["filter"]["tree"]
        if rule[1] == "member" and (role is not None or access.allowed(tx.conn, tree, R)):
            return
        if rule[1] == "reviewer" and (role == "reviewer" or access.allowed(tx.conn, tree, O)):
            return
        raise Forbidden(f"{principal.name} is {'a ' + role if role else 'not'} on queue {q['name']!r}: this "
                        f"needs {'a place on the queue' if rule[1] == 'member' else 'its reviewer role'}")
