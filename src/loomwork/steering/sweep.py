"""The steering sweep: the same expansion (same seed, same settings) at several coefficients of one vector.

Where the backend can (hf: ``stream_sweep``) and only new tokens are steered, every coefficient's samples run in
one batch, each row steered by its own coefficient beside its unsteered twin; each coefficient's samples are then
stored as one generation of their own (its record names the vector and that coefficient). Elsewhere (steering the
prompt too) the coefficients run one after another.
"""

from __future__ import annotations

import time
from typing import AsyncIterator

from .. import ops
from ..backends.base import Backend, Done, SamplingParams, TokenEvent
from ..errors import InvalidInput
from ..store import Store
from ..tree import Node, path_text
from .resolve import resolve


def runs(params: SamplingParams, name: str, coefs: list[float]) -> list[SamplingParams]:
    """The expansion at each coefficient (the same seed); one clear error for a bad list or coefficient."""
    if not 2 <= len(coefs) <= 9 or len(set(coefs)) != len(coefs):
        raise InvalidInput("a sweep takes 2 to 9 different coefficients")
    base = params.model_copy(update={"steer": ()}).with_seed()
    return [base.model_copy(update={"steer": SamplingParams.make(steer=[f"{name}={c}"]).steer}) for c in coefs]


async def sweep(store: Store, node_id: str, backend: Backend, params: SamplingParams, name: str,
                coefs: list[float]) -> AsyncIterator[tuple[float, TokenEvent] | tuple[float, list[Node]]]:
    """Yields ``(coef, token event)`` as samples grow and ``(coef, nodes)`` as each coefficient's are stored."""
    runs_ = runs(params, name, coefs)
    base = runs_[0].model_copy(update={"steer": ()})
    if not backend.capabilities.batched_sweep or base.steer_prompt or base.n * len(coefs) > 64:
        for c, p in zip(coefs, runs_):  # one after another
            async for ev in ops.expand_stream(store, node_id, backend, resolve(store, backend, p)):
                yield (c, ev)
        return
    unit = resolve(store, backend, base.model_copy(update={"steer": SamplingParams.make(steer=[f"{name}=1"]).steer}))
    n = base.n
    path, memory = ops.read_context(store, node_id)
    started = time.perf_counter()
    done = None
    batch = unit.model_copy(update={"n": n * len(coefs)})
    async for event in backend.stream_sweep(memory + path_text(path), batch, [c for c in coefs for _ in range(n)]):
        if isinstance(event, Done):
            done = event
        else:
            yield (coefs[event.index // n], TokenEvent(event.index % n, event.token))
    assert done is not None
    seconds = time.perf_counter() - started
    for k, c in enumerate(coefs):  # each coefficient its own generation, its record naming that coefficient
        comps = done.completions[k * n : (k + 1) * n]
        part = Done(comps, done.prompt_tokens, sum(len(x.tokens) for x in comps))
        params = base.model_copy(update={"steer": (unit.steer[0].model_copy(update={"coef": c}),)})
        yield (c, await ops.store_samples(store, path, backend, params, memory, seconds, part,
                                          {"sweep": {"coefs": coefs, "batched": True}}))
