"""What every router of the API shares: the store of the app a request reached, strict request bodies, node views,
and which models a request may use (the one place a model reference is allowed or refused)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from pydantic import BaseModel, ConfigDict

from ..backends.catalog import PACKAGED
from ..backends.pool import ModelPool
from ..backends.registry import split_ref
from ..errors import InvalidInput
from ..levers import adapter as adapters
from ..store import Store, Tx, access
from ..tree import Node


def store_of(request: Request) -> Store:
    return request.app.state.store


class Body(BaseModel):
    """A request body, read strictly: "2" is not a number and true is not 1 (lax coercion changed data)."""

    model_config = ConfigDict(strict=True, extra="forbid")


def node_view(n: Node, child_count: int | None = None, tokens: bool = True) -> dict[str, Any]:
    d = n.to_json()
    if not tokens:
        del d["tokens"]
    if child_count is not None:
        d["child_count"] = child_count
    lps = [t.logprob for t in n.tokens if t.logprob is not None]
    d["mean_logprob"] = sum(lps) / len(lps) if lps else None
    return d


def views(tx: Tx, nodes: list[Node], include_archived: bool = False) -> list[dict]:
    """Node views with child counts and the model that wrote each (``model``: None for written text), read in the
    caller's transaction (one snapshot, one round of BEGIN/COMMIT)."""
    counts = tx.child_counts([n.id for n in nodes], include_archived=include_archived)
    models = tx.models_of([n.generation_id for n in nodes if n.generation_id])
    return [{**node_view(n, counts[n.id]), "model": models.get(n.generation_id)} for n in nodes]


def with_counts(store: Store, nodes: list[Node]) -> list[dict]:
    with store.read() as tx:
        return views(tx, nodes)


def offered(allowed: set[str] | None):
    """The policy of a server's model pool (backends/pool.py): a shared server (one with a token) offers only its
    packaged models, the mock, adapters of packaged models and those named at start: an ``openai:http://…``
    reference would otherwise let any token holder make the server fetch any address on its network."""

    def policy(ref: str, _principal) -> str:
        backend, model = split_ref(ref)
        base, adapter = adapters.split_model(model)
        if allowed is None or backend == "mock" or (backend == "hf" and model in PACKAGED) or ref in allowed \
                or f"{backend}:{model}" in allowed or (backend == "hf" and base in PACKAGED and adapter is not None
                                                       and adapters.directory(adapter).is_dir()):
            return ref
        raise InvalidInput(f"this server does not offer {ref!r}: its packaged models, mock:*, and those given to "
                           "`loomwork serve --allow-model` are offered")

    return policy


def models_of(request: Request) -> ModelPool:
    return request.app.state.models


def principal(_request: Request):
    """Who asks (the pool's policy decides by it): the request's account, or None without accounts."""
    return access.current()


def allowed_model(request: Request, ref: str | None) -> str:
    """The model a request names (or the server's default), if this server lets its caller use it."""
    return models_of(request).allowed(ref, principal(request))


async def load_backend(request: Request, ref: str | None):
    return await models_of(request).aget(ref, principal(request))
