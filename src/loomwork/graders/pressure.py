"""What a grader's choice cost, as the ledger's grader line counts it (docs/metrics.md, "Grader"): the KL of the
selection policy from the model's own, with the model's distribution of scores estimated by the scores the
grader gave the candidates. log2 n is kept beside it as the upper bound.

- best-of-n (``bon``) and beam growth: the k best of n kept (ties broken uniformly), the continuation one of them;
  k = 1 for best-of-n (``ledger.top_k_of_n_kl``).
- tilted growth: a candidate drawn from softmax(score / T) (``ledger.tilted_kl``).
Candidates the grader failed on are not among the draws it chose from (n counts the scored ones).
"""

from __future__ import annotations

import math

from .. import ledger


def _scored(scores: dict[str, float | None]) -> list[float]:
    return [s for s in scores.values() if s is not None]


def top_k(scores: dict[str, float | None], k: int = 1) -> dict:
    observed = _scored(scores)
    n = len(observed)
    return {"rule": "best-of-n" if k == 1 else f"top-{k} of n", "n": n, "k": k,
            "kl_bits": ledger.top_k_of_n_kl(observed, n, k) if n else 0.0,
            "bound_bits": math.log2(n) if n else 0.0, "scores": dict(scores)}


def tilted(scores: dict[str, float | None], temperature: float) -> dict:
    observed = _scored(scores)
    return {"rule": f"tilted, T = {temperature:g}", "n": len(observed), "temperature": temperature,
            "kl_bits": ledger.tilted_kl(observed, temperature),
            "bound_bits": math.log2(len(observed)) if observed else 0.0, "scores": dict(scores)}
