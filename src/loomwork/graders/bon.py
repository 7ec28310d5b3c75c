"""Best-of-n: sample n continuations, score them with a grader, keep every candidate in the tree (tagged
``bon``), pick the best (tagged ``bon-best``) and record the pick as the grader's choice: the ledger counts it
on the grader's line, log2 n bits, beside the best-of-n KL bound ln n − (n−1)/n (the model's full distribution
of scores is not known, so the exact formula cannot apply; labelled "bound")."""

from __future__ import annotations

from .. import curation, ledger, ops
from ..backends.base import Backend, SamplingParams
from ..errors import InvalidInput
from ..store import Store
from .registry import check_usable
from .scoring import score_nodes


async def best_of_n(store: Store, node_id: str, backend: Backend, params: SamplingParams, grader: dict) -> dict:
    if params.n < 2:
        raise InvalidInput("best-of-n needs n of at least 2")
    check_usable(grader)  # a grader that cannot work fails before anything is sampled and stored
    kids = await ops.expand(store, node_id, backend, params)
    scores = await score_nodes(store, grader, [k.id for k in kids])
    for k in kids:
        ops.tag(store, k.id, "bon")
    scored = [k for k in kids if scores[k.id]["score"] is not None]
    result = {"candidates": [{"id": k.id, "text": k.text, **scores[k.id]} for k in kids], "grader": grader["name"],
              "n": len(kids), "chosen": None, "bits": None, "kl_bits": ledger.best_of_n_kl_bound(len(kids)),
              "kl": "bound"}
    if not scored:
        result["error"] = "the grader failed on every candidate: nothing was chosen (the candidates are kept)"
        return result
    best = max(scored, key=lambda k: scores[k.id]["score"])
    ops.tag(store, best.id, "bon-best")
    choice = curation.record_choice(store, best.id, [k.id for k in kids], grader=grader["name"])
    result.update(chosen=best.id, bits=choice.bits)
    return result
