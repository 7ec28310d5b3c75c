"""A server with accounts: who a token belongs to (cached for a moment, so a page's bursts of requests do not each
read the accounts table), and per-account rate limits on the routes that run models (docs/teams.md)."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict

import anyio
from fastapi import HTTPException, Request

from .. import accounts
from ..store import Store
from ..store.access import Principal, current

CACHE_S = 2.0  # a revoked or rotated token stops working within this long
_CACHE_SIZE = 4096

# the routes that run a model or start work: each call takes one unit of the account's allowance
EXPENSIVE = {
    ("POST", "/api/nodes/{node_id}/expand"), ("POST", "/api/nodes/{node_id}/sweep"),
    ("POST", "/api/nodes/{node_id}/bon"), ("POST", "/api/nodes/{node_id}/grow"),
    ("POST", "/api/nodes/{node_id}/goodhart"), ("POST", "/api/compare"), ("POST", "/api/adapters"),
    ("POST", "/api/steering"), ("POST", "/api/queues/{queue}/items/{node_id}/critique"),
    ("GET", "/api/nodes/{node_id}/next"), ("GET", "/api/nodes/{node_id}/mass-tree"),
    ("GET", "/api/nodes/{node_id}/bits/stream"), ("GET", "/api/nodes/{node_id}/logit-lens"),
}


class Authenticator:
    def __init__(self, store: Store):
        self.store = store
        self._known: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._lock = threading.Lock()

    async def __call__(self, token: str | None) -> Principal | None:
        if not token:
            return None
        key = accounts.token_hash(token)
        with self._lock:
            hit = self._known.get(key)
        if hit is not None and time.monotonic() - hit[1] < CACHE_S:
            return hit[0]
        principal = await anyio.to_thread.run_sync(accounts.authenticate, self.store, token)
        with self._lock:
            if principal is None:
                self._known.pop(key, None)  # unknown tokens are not remembered: a flood cannot fill the cache
            else:
                self._known[key] = (principal, time.monotonic())
                self._known.move_to_end(key)
                while len(self._known) > _CACHE_SIZE:
                    self._known.popitem(last=False)
        return principal


class RateLimit:
    """A token bucket per account: ``per_minute`` calls of the expensive routes a minute, in bursts of as many."""

    def __init__(self, per_minute: int):
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, name: str) -> float:
        """Take one unit; 0 when granted, else the seconds until one is free."""
        now = time.monotonic()
        with self._lock:
            level, then = self._buckets.get(name, (self.capacity, now))
            level = min(self.capacity, level + (now - then) * self.rate)
            if level >= 1:
                self._buckets[name] = (level - 1, now)
                return 0.0
            self._buckets[name] = (level, now)
            return (1 - level) / self.rate


def limit(request: Request, route: tuple[str, str]) -> None:
    """Refuse (429) an expensive call over the account's allowance."""
    limiter: RateLimit | None = getattr(request.app.state, "rate_limit", None)
    principal = current()
    if limiter is None or principal is None or route not in EXPENSIVE:
        return
    wait = limiter.take(principal.name)
    if wait > 0:
        raise HTTPException(429, f"{principal.name} has used this server's allowance of model work "
                                 f"({limiter.capacity:g} calls a minute): try again in {math.ceil(wait)} s",
                            headers={"Retry-After": str(math.ceil(wait))})
