"""The steering API: vectors (list, make, show, delete) and the steering sweep."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import Field

from ..backends.base import SamplingParams, TokenEvent
from ..errors import InvalidInput
from ..steering import vectors
from ..steering.sweep import runs as sweep_runs
from ..steering.sweep import sweep as steering_sweep
from .common import Body, allowed_model, load_backend, store_of, with_counts
from .sse import model_stream

router = APIRouter(prefix="/api")


class NewVector(Body):
    name: str
    model: str | None = None
    layer: int
    method: str | None = None
    plus: list[str] = Field(default_factory=list)
    minus: list[str] = Field(default_factory=list)
    pairs: list[dict[str, Any]] | None = None
    plus_node: str | None = None  # a node's own text as the plus (or minus) text
    minus_node: str | None = None


class Sweep(Body):
    model: str | None = None
    name: str
    coefs: list[float] = Field(min_length=2, max_length=9)
    params: dict[str, Any] = Field(default_factory=dict)


@router.get("/steering")
def list_vectors(request: Request) -> list[dict]:
    return vectors.list_vectors(store_of(request))


@router.post("/steering")
async def create_vector(body: NewVector, request: Request) -> dict:
    store = store_of(request)
    plus, minus = list(body.plus), list(body.minus)
    if body.plus_node or body.minus_node:
        if not (body.plus_node and body.minus_node):
            raise InvalidInput("give both plus_node and minus_node")
        plus.append(store.node(body.plus_node).text)
        minus.append(store.node(body.minus_node).text)
    method = body.method or ("actadd" if len(plus) == 1 and not body.pairs else "mean")
    backend = await load_backend(request, body.model)
    return await vectors.create(store, backend, body.name, body.layer, method, plus, minus, body.pairs)


@router.get("/steering/{name}")
def show_vector(name: str, request: Request, vector: bool = False) -> dict:
    return vectors.show(store_of(request), name, vector)


@router.delete("/steering/{name}")
def delete_vector(name: str, request: Request) -> dict:
    vectors.delete(store_of(request), name)
    return {"deleted": name}


@router.post("/nodes/{node_id}/sweep")
async def sweep(node_id: str, body: Sweep, request: Request) -> StreamingResponse:
    """The same expansion (same seed) at each coefficient of one vector, side by side: in one batch where the
    model can (steering/sweep.py). Server-sent events: ``status``, ``token`` ({coef, index, text}), ``coef``
    ({coef, children}) as each coefficient's samples are stored, then ``done``; or ``error``. Other steering in
    ``params`` is replaced by the swept vector."""
    store = store_of(request)
    base = SamplingParams.make(**{**body.params, "steer": None}).with_seed()
    sweep_runs(base, body.name, body.coefs)  # a bad list or coefficient: a 400 before the stream starts
    vectors.show(store, body.name)  # a missing vector: 404 before the stream starts
    store.node(node_id)
    model = allowed_model(request, body.model)

    async def work(backend):
        yield "status", {"message": f"{body.name} × {', '.join(f'{c:g}' for c in body.coefs)} with {backend.ref}…"}
        async for coef, ev in steering_sweep(store, node_id, backend, base, body.name, body.coefs):
            if isinstance(ev, TokenEvent):
                yield "token", {"coef": coef, "index": ev.index, "text": ev.token.text}
            else:
                yield "coef", {"coef": coef, "children": with_counts(store, ev)}
        yield "done", {"seed": base.seed}

    return model_stream(lambda: load_backend(request, model), model, work)
