"""The ledger's model lever: for a node that a model other than the reference generated, the sum over its tokens
of KL(generating model ‖ reference model) at each position, over the whole vocabulary (docs/metrics.md).

Both models must give full next-token distributions over one vocabulary (local hf models sharing a tokenizer: a
tuned adapter and its base, say); otherwise the line is "not comparable". Computed on request (two teacher-forced
passes per node) and cached with the node's scores.
"""

from __future__ import annotations

import hashlib

from ..backends.pool import PROCESS, ModelPool
from ..errors import LoomworkError
from ..lens.kl import check_comparable
from ..levers.model import identity
from ..store import Store, retrying
from ..store import ledger as sql
from ..tree import Node, Token
from ..units import LN2



def _key(context: str, node: Node, made_by: str) -> str:
    return "model-kl:" + hashlib.sha256(f"{made_by}|{len(context)}:{context}{node.text}".encode()).hexdigest()


async def _kl_bits(model, reference, context: str, node: Node) -> float:
    ids = [t.id for t in node.tokens if not t.cont]
    pre, read = model.continuation_ids(context, node.text)
    if not ids or any(i is None for i in ids):  # merged records: read the ids off the text
        ids = read
    if not ids:
        return 0.0
    return sum(await model.kl_per_position(reference, pre, ids)) / LN2


async def model_kl(store: Store, path: list[Node], gens: dict[str, dict], reference, memory: str = "",
                   models: ModelPool = PROCESS) -> dict[str, float | None]:
    """Node id -> bits (None: not comparable) for each node on ``path`` another model generated."""
    out: dict[str, float | None] = {}
    context = memory
    for node in path:
        gen = gens.get(node.generation_id) if node.generation_id else None
        made_by = f"{gen['backend']}:{gen['model']}" if gen else None
        if node.origin == "model" and made_by and identity(made_by) != identity(reference.ref):
            key = _key(context, node, made_by)
            with store.read() as tx:
                cached = sql.score(tx, node.id, reference.ref, key)
            if cached is not None:
                out[node.id] = cached[0]["logprob"]
            else:
                try:
                    model = await models.aget(made_by)
                    check_comparable(model, reference)
                    bits = await _kl_bits(model, reference, context, node)
                except LoomworkError:
                    bits = None
                out[node.id] = bits
                if bits is not None:
                    _put(store, node.id, reference.ref, key, bits)
        context += node.text
    return out


@retrying
def _put(store: Store, node_id: str, ref: str, key: str, bits: float) -> None:
    with store.tx() as tx:
        sql.put_score(tx, node_id, ref, key, [Token("", bits).to_json()])



