"""The lens API: run a probe suite on models (streamed progress, then the report); the logit lens at a token."""

from __future__ import annotations


from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import Field

from ..errors import InvalidInput
from ..lens import suite as suites
from ..lens.logit_lens import node_lens
from ..lens.report import run_suite
from .common import Body, allowed_model, load_backend, store_of
from .sse import alongside, respond

router = APIRouter(prefix="/api")


class CompareRequest(Body):
    models: list[str] = Field(min_length=1, max_length=6)
    suite: str = "random-numbers"
    samples: int = Field(8, ge=1, le=64)
    seed: int | None = None
    embeddings: bool = False


@router.get("/suites")
def list_suites() -> list[dict]:
    out = []
    for name in suites.builtin_names():
        s = suites.load(name)
        out.append({"name": name, "description": s.description, "probes": len(s.probes), "generations": len(s.generations)})
    return out


@router.post("/compare")
async def compare(body: CompareRequest, request: Request) -> StreamingResponse:
    """Server-sent events: ``status`` messages while models load and score, then ``done`` with the report (the
    same JSON as `loomwork compare --out`), or ``error``."""
    if body.suite not in suites.builtin_names():
        raise InvalidInput(f"unknown suite {body.suite!r}: use one of {', '.join(suites.builtin_names())}")
    suite = suites.load(body.suite)
    refs = [allowed_model(request, ref) for ref in body.models]

    async def events():
        backends = []
        for ref in refs:
            yield "status", {"message": f"loading {ref}…"}
            backends.append(await load_backend(request, ref))
        async for name, data in alongside(lambda emit: run_suite(backends, suite, body.samples, body.seed,
                                                                 embeddings=body.embeddings, progress=emit), "status"):
            yield (name, {"report": data}) if name == "done" else (name, {"message": data})

    return respond(events())


@router.get("/nodes/{node_id}/logit-lens")
async def node_logit_lens(node_id: str, request: Request, token: int | None = None, k: int = 5) -> dict:
    """What each layer of the model that wrote the node predicted at one of its tokens (docs/lens.md, "Logit
    lens"); a steered node's beside the unsteered model's."""
    store = store_of(request)
    node = store.node(node_id)
    if node.generation_id is None:
        raise InvalidInput(f"node {node_id} is {node.origin} text: the logit lens reads tokens a model generated")
    gen = store.generation(node.generation_id)
    backend = await load_backend(request, allowed_model(request, f"{gen.backend}:{gen.model}"))
    return await node_lens(store, node_id, backend, token, k)
