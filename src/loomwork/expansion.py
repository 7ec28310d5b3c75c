"""Expansions as the library, the CLI and the page ask for them: the steering vectors named in the parameters are
read from the store and checked against the model (steering/resolve.py), then ops expands with every vector filled
in. ops itself never reads a steering vector: the request it gets is complete."""

from __future__ import annotations

from typing import AsyncIterator, Callable

from . import ops
from .backends.base import Backend, SamplingParams, TokenEvent
from .steering.resolve import resolve
from .store import Store
from .errors import InvalidInput
from .tree import Node


async def expand_stream(store: Store, node_id: str, backend: Backend,
                        params: SamplingParams) -> AsyncIterator[TokenEvent | list[Node]]:
    """ops.expand_stream with named steering vectors resolved: tokens as they come, then the new nodes."""
    async for event in ops.expand_stream(store, node_id, backend, resolve(store, backend, params)):
        yield event


async def expand(store: Store, node_id: str, backend: Backend, params: SamplingParams,
                 on_token: Callable[[TokenEvent], None] | None = None) -> list[Node]:
    """ops.expand with named steering vectors resolved: the new nodes."""
    return await ops.expand(store, node_id, backend, resolve(store, backend, params), on_token)


MAX_MODELS = 6


def plan(store: Store, backends: list[Backend], params: SamplingParams) -> list[tuple[Backend, SamplingParams]]:
    """Several models at once: each backend with the request's parameters (one seed for all), its steering
    resolved and checked before any model runs (a vector made for one model does not steer another)."""
    if not 1 <= len(backends) <= MAX_MODELS:
        raise InvalidInput(f"expand with 1 to {MAX_MODELS} models at once, not {len(backends)}")
    refs = [b.ref for b in backends]
    if len(set(refs)) != len(refs):
        raise InvalidInput("a model is named twice: ask for more samples (n) instead")
    params = params.with_seed()
    return [(b, resolve(store, b, params)) for b in backends]


async def expand_with_models(store: Store, node_id: str, backends: list[Backend], params: SamplingParams,
                             on_token: Callable[[int, TokenEvent], None] | None = None) -> list[Node]:
    """n samples from each of several models under one node (Tapestry's multi-model weaving), one model after
    another, each its own generation (so each child says which model wrote it, and the ledger scores it as such).
    ``on_token(k, event)``: k is the model's place in ``backends``."""
    children: list[Node] = []
    for k, (backend, resolved) in enumerate(plan(store, backends, params)):
        hook = None if on_token is None else (lambda e, k=k: on_token(k, e))
        children += await ops.expand(store, node_id, backend, resolved, hook)
    return children
