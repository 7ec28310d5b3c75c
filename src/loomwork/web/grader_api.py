"""The graders API: graders (list, make, show), best-of-n, judge-guided growth (streamed, cancellable)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import Field

from ..backends.base import SamplingParams
from ..errors import InvalidInput
from ..graders import goodhart as goodhart_mod
from ..graders import grow as grow_mod
from ..graders import registry
from ..graders.bon import best_of_n
from ..steering.resolve import resolve
from .common import Body, allowed_model, load_backend, models_of, store_of
from .sse import alongside, model_stream

router = APIRouter(prefix="/api")


class NewGrader(Body):
    name: str
    kind: str
    model: str | None = None
    template: str | None = None
    target: str | None = None
    question: str | None = None


class BestOfN(Body):
    grader: str
    model: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class Grow(Body):
    grader: str
    model: str | None = None
    nodes: int | None = None
    tokens: int | None = None
    beam: int = 2
    branching: int = 3
    strategy: str = "beam"
    temperature: float = 1.0
    lookahead: int = 3
    params: dict[str, Any] = Field(default_factory=dict)


@router.get("/graders")
def list_graders(request: Request) -> list[dict]:
    return registry.list_graders(store_of(request))


@router.post("/graders")
def create_grader(body: NewGrader, request: Request) -> dict:
    if body.kind == "callable" and request.app.state.allowed_models is not None:
        # a shared server never imports code a token holder names
        raise InvalidInput("a shared server does not make callable graders: make them with the CLI")
    if body.kind == "judge":
        allowed_model(request, body.model)
    return registry.create(store_of(request), body.name, body.kind, models=models_of(request), model=body.model,
                           template=body.template, target=body.target, question=body.question)


@router.get("/graders/{name}")
def show_grader(name: str, request: Request) -> dict:
    return registry.get(store_of(request), name)


@router.post("/nodes/{node_id}/bon")
async def bon(node_id: str, body: BestOfN, request: Request) -> dict:
    store = store_of(request)
    g = registry.get(store, body.grader)
    params = SamplingParams.make(**body.params)
    store.node(node_id)
    backend = await load_backend(request, body.model)
    return await best_of_n(store, node_id, backend, resolve(store, backend, params), g, models_of(request))


@router.post("/nodes/{node_id}/grow")
async def grow(node_id: str, body: Grow, request: Request) -> StreamingResponse:
    """Server-sent events: ``status``, ``expanded`` ({parent, children with scores, frontier, nodes, tokens}) per
    expansion, then ``done`` (the summary) or ``error``. Closing the stream stops the growth between expansions;
    what it grew stays."""
    store = store_of(request)
    g = registry.get(store, body.grader)
    grow_mod.check(body.nodes, body.tokens, body.beam, body.branching, body.strategy, body.temperature,
                   body.lookahead)
    params = SamplingParams.make(**{**body.params, "n": None})
    store.node(node_id)
    model = allowed_model(request, body.model)

    async def work(backend):
        resolved = resolve(store, backend, params)
        async for item in alongside(lambda emit: grow_mod.grow(
                store, node_id, backend, g, resolved, budget_nodes=body.nodes, budget_tokens=body.tokens,
                beam=body.beam, branching=body.branching, strategy=body.strategy, temperature=body.temperature,
                lookahead=body.lookahead, seed=params.seed or 0, on_event=emit, models=models_of(request)), "expanded"):
            yield item  # closing the stream (the page went away) stops growing; an expansion in flight stores nothing

    return model_stream(lambda: load_backend(request, model), model, work)


class Goodhart(Body):
    proxy: str
    gold: str
    ns: list[int] = Field(default_factory=lambda: [1, 2, 4, 8, 16, 32])
    pool: int = 64
    model: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


@router.post("/nodes/{node_id}/goodhart")
async def goodhart(node_id: str, body: Goodhart, request: Request) -> StreamingResponse:
    """Server-sent events: ``status``, then ``done`` with the curve (as `loomwork goodhart --json`), or ``error``."""
    store = store_of(request)
    proxy, gold = registry.get(store, body.proxy), registry.get(store, body.gold)
    goodhart_mod.check_ns(body.ns, body.pool)
    params = SamplingParams.make(**{**body.params, "n": None, "steer": None}).with_seed()
    store.node(node_id)
    model = allowed_model(request, body.model)

    async def work(backend):
        def run(emit):  # the pool's sampling and scoring as it goes, then the curve
            def progress(what: str, done: int, total: int) -> None:
                emit({"message": f"{what}: {done} of {total}", "what": what, "done": done, "total": total})

            return goodhart_mod.run(store, node_id, backend, proxy, gold, body.ns, body.pool, params,
                                    progress=progress, models=models_of(request))

        async for item in alongside(run, "status"):
            yield item

    return model_stream(lambda: load_backend(request, model), model, work)
