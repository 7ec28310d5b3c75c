"""Expansions as the library, the CLI and the page ask for them: the steering vectors named in the parameters are
read from the store and checked against the model (steering/resolve.py), then ops expands with every vector filled
in. ops itself never reads a steering vector: the request it gets is complete."""

from __future__ import annotations

from typing import AsyncIterator, Callable

from . import ops
from .backends.base import Backend, SamplingParams, TokenEvent
from .steering.resolve import resolve
from .store import Store
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
