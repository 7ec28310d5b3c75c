"""The logit lens on a node's token (docs/lens.md, "Logit lens"): what each decoder block of the model that wrote
it predicted at that position, read through the model's final norm and unembedding; for a steered node, the same
for the unsteered model beside it, so one sees at which block the steering took hold."""

from __future__ import annotations

from ..backends.base import Backend, SamplingParams
from ..errors import InvalidInput
from ..steering.resolve import resolve
from ..store import Store
from ..tree import path_text

MAX_K = 20


def _worst(node) -> int:
    """The token the model found least likely (the default: where something happened), else the first."""
    scored = [(t.logprob, i) for i, t in enumerate(node.tokens) if t.logprob is not None and not t.cont]
    return min(scored)[1] if scored else 0


async def node_lens(store: Store, node_id: str, backend: Backend, token: int | None = None, k: int = 5) -> dict:
    """The logit lens at token ``token`` of a model-written node (default: its least likely token), with the
    model that wrote it. ``k`` alternatives per block (1 to 20)."""
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise InvalidInput(f"k is how many predictions each block shows, 1 to {MAX_K}, not {k!r}")
    path = store.path(node_id)
    node = path[-1]
    if node.origin != "model" or node.generation_id is None or not node.tokens:
        raise InvalidInput(f"node {node.id} is {node.origin} text: the logit lens reads tokens a model generated "
                           "(a model node's)")
    gen = store.generation(node.generation_id)
    if f"{gen.backend}:{gen.model}" != backend.ref:
        raise InvalidInput(f"node {node.id} was written by {gen.backend}:{gen.model}: the lens reads that model's "
                           f"layers, not {backend.ref}'s")
    index = _worst(node) if token is None else token
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(node.tokens):
        raise InvalidInput(f"token {token!r} is out of range: node {node.id} has tokens 0 to {len(node.tokens) - 1}")
    ids = [t.id for t in node.tokens[: index + 1]]
    if node.tokens[0].cont or any(i is None for i in ids):
        bad = next((i for i, t in enumerate(node.tokens[: index + 1]) if t.id is None or t.cont), index)
        raise InvalidInput(f"token {bad} of node {node.id} is not one whole model token (a character split across "
                           "tokens, or a node split inside a token): the lens needs the ids the model wrote; try a "
                           "token before it, or the unsplit node")
    prefix = gen.params.get("memory", "") + path_text(path[:-1])
    out = {"node": node.id, "index": index, "text": node.tokens[index].text, "model": backend.ref, "k": k,
           "lens": await backend.logit_lens(prefix, ids, index, k)}
    steer = gen.params.get("steer") or []
    if steer:
        params = resolve(store, backend, SamplingParams.make(steer=[{"name": s["name"], "coef": s["coef"]}
                                                                   for s in steer]))
        out["steered"] = await backend.logit_lens(prefix, ids, index, k, params.steer,
                                                  bool(gen.params.get("steer_prompt")))
        out["steer"] = [{"name": s["name"], "coef": s["coef"], "layer": s.get("layer")} for s in steer]
    return out
