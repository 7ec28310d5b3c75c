"""Working together on one server (docs/teams.md): who you are, a tree's events as a live stream, who else has
the tree open and where, and who has which role on a tree or queue."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import StreamingResponse
from pydantic import Field

from .. import accounts, navigate
from ..errors import NotFound
from ..store import access, retrying
from ..store import events as sql
from ..store.journal import current_actor
from .common import Body, store_of
from .live import Hub
from .sse import respond

router = APIRouter(prefix="/api")
PRESENCE_TTL_S = 20.0  # the page says where it is every PRESENCE_EVERY_S; gone after this long without
KEEPALIVE_S = 15.0  # a silent stream says so this often (nginx closes one silent for 60 s by default)
MAX_STREAMS = 16  # event streams one account may hold open at once (several tabs, a reconnect or two)


class Presence(Body):
    client: str = Field(min_length=1, max_length=40)
    node_id: str | None = Field(None, max_length=40)


class Grant(Body):
    account: str = Field(min_length=1, max_length=64)
    role: str | None


@router.get("/me")
def me(request: Request) -> dict:
    p = access.current()
    return {"name": p.name if p else current_actor(), "admin": bool(p and p.admin),
            "accounts": bool(request.app.state.accounts)}


def _after(request: Request) -> int:
    """Where a stream starts: after Last-Event-ID (a reconnect) or ?after= (the version the page has)."""
    raw = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    if not raw.isdigit() or len(raw) > 12:
        raise HTTPException(400, f"Last-Event-ID / after must be an event number, not {raw[:40]!r}")
    return int(raw)


@router.get("/trees/{tree_id}/events")
async def tree_events(tree_id: str, request: Request) -> StreamingResponse:
    """Server-sent events: ``change`` for each event of the tree after the one given (``id``: its number, so a
    reconnect resumes with Last-Event-ID and misses nothing), ``presence`` when who is here changes, and
    ``deleted`` if the tree goes; ``reset`` first when the number given is beyond the tree's (a restored
    backup): the page reloads and the stream goes on from the tree's version. Every event exactly once, in order."""
    store, hub = store_of(request), _hub(request)
    after = _after(request)
    with store.read() as tx:
        tx.tree(tree_id)
    name = (access.current() or access.Principal(current_actor())).name
    streams: dict[str, int] = request.app.state.streams
    if streams.get(name, 0) >= MAX_STREAMS:
        raise HTTPException(429, f"{name} has {MAX_STREAMS} event streams open already: close a tab")
    streams[name] = streams.get(name, 0) + 1

    async def stream():
        seen, here, quiet_since = after, None, time.monotonic()
        try:
            now = await asyncio.to_thread(_version, store, tree_id)
            if seen > now:  # numbers from another life of the tree (a restored backup): start again from now
                seen = now
                yield "reset", {"version": now}, now
            with hub.watching(tree_id) as waiter:
                while not await request.is_disconnected():
                    waiter.clear()
                    gone, batch, people = await asyncio.to_thread(_look, store, tree_id, seen)
                    for e in batch:
                        seen, quiet_since = e["seq"], time.monotonic()
                        yield "change", e, e["seq"]
                    hub.seen(tree_id, seen)
                    if gone:
                        yield "deleted", {"tree_id": tree_id}
                        return
                    if people != here:
                        here, quiet_since = people, time.monotonic()
                        yield "presence", {"here": people}
                    elif time.monotonic() - quiet_since > KEEPALIVE_S:  # a proxy closes a silent connection
                        quiet_since = time.monotonic()
                        yield "ping", {}
                    if len(batch) < 500:
                        await hub.wait(waiter)
        finally:
            streams[name] -= 1

    return respond(stream())


def _version(store, tree_id: str) -> int:
    with store.read() as tx:
        return tx.version(tree_id)


def _look(store, tree_id: str, seen: int) -> tuple[bool, list[dict], list[dict]]:
    """Whether the tree is gone, its events after ``seen`` and who is here: one snapshot."""
    with store.read() as tx:
        if not sql.tree_exists(tx.conn, tree_id):
            return True, [], []
        return False, sql.since(tx.conn, tree_id, seen), sql.present(tx.conn, tree_id, PRESENCE_TTL_S)


def _hub(request: Request) -> Hub:
    hub = request.app.state.hub
    hub.start()  # binds the hub to the server's event loop on first use
    return hub


@router.post("/trees/{tree_id}/presence")
def presence(tree_id: str, body: Presence, request: Request) -> dict:
    """Where this tab is in the tree (``node_id`` null: it left). Seen by the tree's other subscribers."""
    _see(store_of(request), tree_id, body.client, body.node_id)
    return {"ok": True}


@retrying
def _see(store, tree_id: str, client: str, node_id: str | None) -> None:
    with store.tx() as tx:
        tx.lock_tree(tree_id, need="viewer")
        if node_id is not None and (not tx.exists(node_id) or tx.tree_of(node_id) != tree_id):
            raise NotFound(f"no node {node_id!r} in tree {tree_id}")
        sql.see(tx.conn, tree_id, current_actor(), client, node_id)


class Reads(Body):
    nodes: list[str] = Field(max_length=navigate.MAX_MARKED)


@router.get("/trees/{tree_id}/reads")
def reads(tree_id: str, request: Request) -> dict:
    """The tree's nodes you have opened (the page marks the others unread)."""
    return {"read": sorted(navigate.read_nodes(store_of(request), tree_id))}


@router.post("/trees/{tree_id}/reads")
def mark_read(tree_id: str, body: Reads, request: Request) -> dict:
    """Mark nodes read by you: no change to the tree (no event, nothing to undo)."""
    return {"marked": retrying(navigate.mark_read)(store_of(request), tree_id, body.nodes)}


@router.get("/trees/{tree_id}/roles")
def tree_roles(tree_id: str, request: Request) -> list[dict]:
    return accounts.sharing(store_of(request), tree_id)


@router.put("/trees/{tree_id}/roles")
def share_tree(tree_id: str, body: Grant, request: Request) -> list[dict]:
    """Give an account (or "*", everyone) a role on the tree; role null takes it away. Owners only."""
    return accounts.grant(store_of(request), body.account, tree_id, body.role)


@router.put("/queues/{queue}/roles")
def share_queue(queue: str, body: Grant, request: Request) -> list[dict]:
    return accounts.grant_queue(store_of(request), body.account, queue, body.role)
