"""The steering sweep: the same expansion (same seed, same settings) at several coefficients of one vector.

Where the backend can (hf: ``stream_sweep``) and only new tokens are steered, every coefficient's samples run in
one batch, each row steered by its own coefficient beside its unsteered twin; each coefficient's samples are then
stored as one generation of their own (its record names the vector and that coefficient). Elsewhere (steering the
prompt too) the coefficients run one after another.
"""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator

from .. import ops
from ..backends.base import Backend, Completion, Done, SamplingParams, TokenEvent
from ..errors import InvalidInput
from ..store import Store
from ..tree import Generation, Node, new_id, path_text, utcnow
from .resolve import resolve


async def sweep(store: Store, node_id: str, backend: Backend, params: SamplingParams, name: str,
                coefs: list[float]) -> AsyncIterator[tuple[float, TokenEvent] | tuple[float, list[Node]]]:
    """Yields ``(coef, token event)`` as samples grow and ``(coef, nodes)`` as each coefficient's are stored."""
    if not 2 <= len(coefs) <= 9 or len(set(coefs)) != len(coefs):
        raise InvalidInput("a sweep takes 2 to 9 different coefficients")
    base = params.model_copy(update={"steer": ()}).with_seed()
    runs = [base.model_copy(update={"steer": SamplingParams.make(steer=[f"{name}={c}"]).steer}) for c in coefs]
    if not hasattr(backend, "stream_sweep") or base.steer_prompt or base.n * len(coefs) > 64:
        for c, p in zip(coefs, runs):  # one after another
            async for ev in ops.expand_stream(store, node_id, backend, p):
                yield (c, ev)
        return
    unit = resolve(store, backend, base.model_copy(update={"steer": SamplingParams.make(steer=[f"{name}=1"]).steer}))
    n = base.n
    with store.read() as tx:
        path = tx.path(node_id)
        memory = (tx.tree(path[0].tree_id).meta.get("settings") or {}).get("memory", "")
    node, context = path[-1], path_text(path)
    started = time.perf_counter()
    done = None
    batch = unit.model_copy(update={"n": n * len(coefs)})
    async for event in backend.stream_sweep(memory + context, batch, [c for c in coefs for _ in range(n)]):
        if isinstance(event, Done):
            done = event
        else:
            yield (coefs[event.index // n], TokenEvent(event.index % n, event.token))
    assert done is not None
    seconds = time.perf_counter() - started
    ancestry = [x.id for x in path]
    for k, (c, p) in enumerate(zip(coefs, runs)):
        resolved = resolve(store, backend, p)
        comps: list[Completion] = done.completions[k * n : (k + 1) * n]
        part = Done(comps, done.prompt_tokens, sum(len(x.tokens) for x in comps))
        params_json = {**resolved.model_dump(mode="json"), "sweep": {"coefs": coefs, "batched": True},
                       **({"memory": memory} if memory else {})}
        gen = Generation(id=new_id(), tree_id=node.tree_id, node_id=node.id, backend=backend.name,
                         model=backend.model, params=params_json, seed=base.seed, duration_s=seconds,
                         prompt_tokens=part.prompt_tokens, completion_tokens=part.completion_tokens,
                         created_at=utcnow())
        yield (c, await asyncio.to_thread(ops._store_expansion, store, ancestry, context, gen, part, backend.ref))
