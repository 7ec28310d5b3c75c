"""The tuning API: adapters (list, show, delete), start a tune from trees (its own process: tuning/jobs.py),
follow it (server-sent events replayed from its progress file, then live) and stop it."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from ..errors import InvalidInput, LoomworkError
from ..tuning import adapters, jobs, provenance
from ..tuning.data import rows_from_tree
from ..tuning.train import TuneConfig
from .common import Body, allowed_model, store_of
from .sse import respond

router = APIRouter(prefix="/api")
FOLLOW_POLL_S = 0.5


class NewTune(Body):
    name: str
    trees: list[str]
    kl_budget: float
    base: str | None = None  # default: the server's default model, if it is an hf model
    method: str = "sft"
    lora_r: int = 8
    epochs: int = 1
    lr: float = 2e-4
    batch_size: int = 4
    eval_every: int = 5
    beta: float = 0.1
    heldout: float = 0.2
    seed: int = 0
    kl_prompts: int = 4
    kl_samples: int = 4
    kl_tokens: int = 24
    max_length: int = 512


def _public(m: dict) -> dict:
    out = {k: v for k, v in m.items() if k not in ("pid",)}
    out["model"] = f"hf:{m.get('base')}+{m.get('name')}"
    return out


@router.get("/adapters")
def list_adapters() -> list[dict]:
    return [_public(a) for a in adapters.list_adapters()]


@router.get("/adapters/{name}")
def show_adapter(name: str) -> dict:
    return _public(adapters.describe(name))


@router.delete("/adapters/{name}")
def delete_adapter(name: str) -> dict:
    adapters.delete(name)
    return {"deleted": name}


@router.post("/adapters")
def start_tune(body: NewTune, request: Request) -> dict:
    """Check, claim and start a run on the trees' own exports; its progress is at /api/adapters/NAME/events."""
    if body.method not in ("sft", "dpo"):
        raise InvalidInput(f"unknown method {body.method!r} (sft or dpo)")
    if not body.trees:
        raise InvalidInput("give at least one tree to train on")
    ref = allowed_model(request, f"hf:{provenance.bare(body.base)}" if body.base else None)
    if not ref.startswith("hf:"):
        raise InvalidInput(f"tuning needs a local hf model as its base, not {ref!r}")
    store = store_of(request)
    rows = [r for t in dict.fromkeys(body.trees) for r in rows_from_tree(store, store.tree(t).id, body.method)]
    cfg = TuneConfig(**{k: v for k, v in body.model_dump().items() if k not in ("name", "trees", "base")},
                     lora_alpha=2 * body.lora_r)
    source = {"trees": list(dict.fromkeys(body.trees)), "database": store.label, "started_from": "web"}
    return _public(jobs.start(body.name, ref[3:], rows, cfg, source))


@router.post("/adapters/{name}/stop")
def stop_tune(name: str) -> dict:
    return _public(jobs.request_stop(name))


@router.get("/adapters/{name}/events")
async def follow(name: str, request: Request) -> StreamingResponse:
    """Server-sent events: every event of the run so far, then new ones as they come (``id``: where the next
    starts, for Last-Event-ID), then ``done`` with the adapter's record once the run has ended."""
    adapters.describe(name)  # 404 for an unknown name, before the stream starts
    try:
        start = int(request.headers.get("last-event-id") or 0)
    except ValueError:
        start = 0

    async def events():
        offset = start
        while True:
            batch, offset = adapters.events(name, offset)
            for e in batch:
                yield e["event"], e, offset
            try:
                state = adapters.describe(name)
            except LoomworkError:  # deleted while followed
                yield "error", {"message": f"adapter {name!r} is gone"}
                return
            if state["status"] not in ("training", "starting"):
                batch, offset = adapters.events(name, offset)  # what it wrote as it ended
                for e in batch:
                    yield e["event"], e, offset
                yield "done", _public(state)
                return
            if await request.is_disconnected():
                return
            await asyncio.sleep(FOLLOW_POLL_S)

    return respond(events())
