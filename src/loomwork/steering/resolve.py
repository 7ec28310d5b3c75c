"""The steering vectors an expansion names, filled in from the store and checked against the model."""

from __future__ import annotations

from ..backends.base import SamplingParams
from ..backends.registry import same_weights
from ..errors import InvalidInput, Unsupported
from ..store import Store
from ..store import steering as sql


def resolve(store: Store, backend, params: SamplingParams) -> SamplingParams:
    """``params`` with each named vector's layer, model, norm and numbers; refused if the backend cannot steer or
    a vector was made for another model."""
    if not params.steer:
        return params
    if not backend.capabilities.steering:
        raise Unsupported(f"{backend.ref} cannot steer: steering vectors need a local hf: or llama: model")
    out = []
    with store.read() as tx:
        for s in params.steer:
            v = sql.vector(tx, s.name)
            if not same_weights(v["model"], backend.ref):
                raise InvalidInput(f"steering vector {s.name!r} was made for {v['model']}, not {backend.ref}: make "
                                   "one with this model")
            out.append(s.model_copy(update={"layer": v["layer"], "model": v["model"], "norm": v["norm"],
                                            "vector": tuple(v["vector"])}))
    resolved = params.model_copy(update={"steer": tuple(out)})
    backend.check_steer(resolved.steer)
    return resolved
