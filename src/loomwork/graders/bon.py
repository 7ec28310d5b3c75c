"""Best-of-n: sample n continuations, score them with a grader, keep every candidate in the tree (tagged
``bon``), pick the best (tagged ``bon-best``) and record the pick as the grader's choice: the ledger counts it
on the grader's line as the KL of best-of-n over the scores the candidates got (ties included: a grader that
scores every candidate the same applied no pressure), with log2 n beside it as the upper bound."""

from __future__ import annotations

import random

from .. import curation, ops
from ..levers import grader as grader_cost
from ..backends.base import Backend, SamplingParams
from ..backends.pool import PROCESS, ModelPool
from ..errors import InvalidInput
from ..store import Store
from .registry import check_usable
from .scoring import score_nodes


async def best_of_n(store: Store, node_id: str, backend: Backend, params: SamplingParams, grader: dict,
                    models: ModelPool = PROCESS) -> dict:
    if params.n < 2:
        raise InvalidInput("best-of-n needs n of at least 2")
    check_usable(grader, models)  # a grader that cannot work fails before anything is sampled and stored
    kids = await ops.expand(store, node_id, backend, params)
    scores = await score_nodes(store, grader, [k.id for k in kids], models=models)
    for k in kids:
        ops.tag(store, k.id, "bon")
    scored = [k for k in kids if scores[k.id]["score"] is not None]
    result = {"candidates": [{"id": k.id, "text": k.text, **scores[k.id]} for k in kids], "grader": grader["name"],
              "n": len(kids), "chosen": None, "bits": None, "bound_bits": None, "rule": None}
    if not scored:
        result["error"] = "the grader failed on every candidate: nothing was chosen (the candidates are kept)"
        return result
    top = max(scores[k.id]["score"] for k in scored)
    # ties broken uniformly (seeded), as the KL below assumes: the first of them would be a choice of its own
    best = random.Random(params.seed).choice([k for k in scored if scores[k.id]["score"] == top])
    ops.tag(store, best.id, "bon-best")
    cost = grader_cost.top_k({k.id: scores[k.id]["score"] for k in kids})
    curation.record_choice(store, best.id, [k.id for k in kids], grader=grader["name"], pressure=cost)
    result.update(chosen=best.id, bits=cost["kl_bits"], bound_bits=cost["bound_bits"], rule=cost["rule"],
                  scored=cost["n"])
    return result
