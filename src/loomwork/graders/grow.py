"""Judge-guided expansion ("autoloom", as MiniHF's weave): grow the tree automatically from a node, within a
budget of nodes or tokens. Each round picks which frontier nodes to expand (``beam``: the best-scored; ``tilted``:
sampled from the softmax of their scores at a temperature; ``weave``: MiniHF's tree search, graders/weave.py),
expands each into ``branching`` children, scores them,
and records every pick as the grader's choice among its siblings, on the ledger's grader line at what the selection
did (levers/grader.py): beam, the KL of keeping the top k of the siblings (k: how many of them it has picked so
far); tilted, the KL of the softmax at its temperature. The tree shows which choices were whose; a person can stop
it, prune and go on by hand.
"""

from __future__ import annotations

import math
import random
from typing import Awaitable, Callable

from .. import curation, ops
from ..levers import grader as grader_cost
from ..backends.base import Backend, SamplingParams
from ..backends.pool import PROCESS, ModelPool
from ..errors import InvalidInput
from ..store import Store
from .registry import check_usable
from . import weave
from .scoring import score_nodes

STRATEGIES = ("beam", "tilted", "weave")
MAX_LOOKAHEAD = 16


def check(budget_nodes: int | None, budget_tokens: int | None, beam: int, branching: int, strategy: str,
          temperature: float, lookahead: int = 3) -> None:
    if (budget_nodes is None) == (budget_tokens is None):
        raise InvalidInput("give one budget: a number of nodes or of tokens")
    if (budget_nodes or budget_tokens or 0) <= 0:
        raise InvalidInput("the budget must be positive")
    if beam < 1 or branching < 2:
        raise InvalidInput("beam is at least 1 and branching at least 2")
    if strategy not in STRATEGIES:
        raise InvalidInput(f"unknown strategy {strategy!r} ({', '.join(STRATEGIES)})")
    if not (temperature > 0 and math.isfinite(temperature)):
        raise InvalidInput("the temperature must be positive")
    if not 1 <= lookahead <= MAX_LOOKAHEAD:
        raise InvalidInput(f"the lookahead is 1 to {MAX_LOOKAHEAD} levels, not {lookahead}")


def pick(frontier: list[tuple[str, float]], k: int, strategy: str, temperature: float, rng: random.Random) -> list[str]:
    """k distinct nodes of the frontier: the best-scored, or drawn without replacement from softmax(score / T)."""
    if strategy == "beam":  # ties broken uniformly (shuffled, then a stable sort), as the ledger's KL assumes
        pool = list(frontier)
        rng.shuffle(pool)
        return [n for n, _s in sorted(pool, key=lambda x: -x[1])[:k]]
    pool = list(frontier)
    out = []
    while pool and len(out) < k:
        top = max(s for _n, s in pool)
        weights = [math.exp((s - top) / temperature) for _n, s in pool]
        i = rng.choices(range(len(pool)), weights=weights)[0]
        out.append(pool.pop(i)[0])
    return out


async def grow(store: Store, node_id: str, backend: Backend, grader: dict, params: SamplingParams, *,
               budget_nodes: int | None = None, budget_tokens: int | None = None, beam: int = 2, branching: int = 3,
               strategy: str = "beam", temperature: float = 1.0, seed: int = 0, lookahead: int = 3,
               on_event: Callable[[dict], Awaitable[None] | None] = lambda _e: None,
               models: ModelPool = PROCESS) -> dict:
    check(budget_nodes, budget_tokens, beam, branching, strategy, temperature, lookahead)
    check_usable(grader, models)  # before anything is sampled and stored
    if strategy == "weave":
        return await weave.run(store, node_id, backend, grader, params, budget_nodes=budget_nodes,
                               budget_tokens=budget_tokens, beam=beam, branching=branching, lookahead=lookahead,
                               temperature=temperature, seed=seed, on_event=on_event, models=models)
    rng = random.Random(seed)
    frontier: list[tuple[str, float]] = [(node_id, 0.0)]
    siblings: dict[str, list[str]] = {}  # node -> the candidates it was generated among
    scored: dict[str, float | None] = {}  # node -> its score (None: the grader failed on it)
    picked: dict[str, int] = {}  # first sibling's id -> how many of that group have been picked
    made = tokens = rounds = 0
    choices = []

    while frontier:
        if (budget_nodes is not None and made >= budget_nodes) or (budget_tokens is not None and tokens >= budget_tokens):
            break
        rounds += 1
        chosen = pick(frontier, beam, strategy, temperature, rng)
        for parent in chosen:
            if parent in siblings and len(siblings[parent]) > 1:  # the grader chose to go on from this one
                group = siblings[parent]
                picked[group[0]] = picked.get(group[0], 0) + 1
                seen = {g: scored[g] for g in group}
                cost = grader_cost.top_k(seen, picked[group[0]]) if strategy == "beam" else \
                    grader_cost.tilted(seen, temperature, picked[group[0]])
                curation.record_choice(store, parent, group, grader=grader["name"], pressure=cost)
                choices.append({"node": parent, "among": len(group), "bits": cost["kl_bits"], "rule": cost["rule"],
                                "bound_bits": cost["bound_bits"]})
        frontier = [f for f in frontier if f[0] not in chosen]
        for parent in chosen:
            n = branching if budget_nodes is None else min(branching, budget_nodes - made)  # never past the budget
            kids = await ops.expand(store, parent, backend, params.model_copy(update={"n": n, "seed": seed + made}))
            made += len(kids)
            tokens += sum(len(k.tokens) for k in kids)
            scores = await score_nodes(store, grader, [k.id for k in kids], models=models)
            for k in kids:
                siblings[k.id] = [x.id for x in kids]
                scored[k.id] = scores[k.id]["score"]
                if scores[k.id]["score"] is not None:  # a node the grader failed on is not grown further
                    frontier.append((k.id, scores[k.id]["score"]))
            await weave.tell(on_event, {
                "event": "expanded", "parent": parent, "round": rounds, "nodes": made, "tokens": tokens,
                "children": [{"id": k.id, "text": k.text, **scores[k.id]} for k in kids],
                "frontier": sorted(({"id": n, "score": s} for n, s in frontier), key=lambda x: -x["score"])})
            if (budget_nodes is not None and made >= budget_nodes) or \
                    (budget_tokens is not None and tokens >= budget_tokens):
                break
    best = max(frontier, key=lambda x: x[1])[0] if frontier else None
    return {"node": node_id, "grader": grader["name"], "strategy": strategy, "rounds": rounds, "nodes": made,
            "tokens": tokens, "choices": choices, "grader_bits": sum(c["bits"] for c in choices), "best": best}
