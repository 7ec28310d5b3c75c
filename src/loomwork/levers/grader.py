"""The grader lever: a grader's choice (best-of-n, judge-guided growth) is charged the KL of its selection policy
from the model's own, with the model's distribution of scores estimated by the scores the grader gave the
candidates (docs/metrics.md, "Grader"); log2 n is kept beside it as the upper bound.

- best-of-n (``bon``) and beam growth: the k best of n kept (ties broken uniformly), the continuation one of them;
  k = 1 for best-of-n (``top_k_of_n_kl``; ``top_k`` is the record a choice keeps).
- tilted growth: a candidate drawn from softmax(score / T) (``tilted_kl``; ``tilted``).
Candidates the grader failed on are not among the draws it chose from (n counts the scored ones).
"""

from __future__ import annotations

import math
from collections import defaultdict

from ..units import LN2


def _levels(scores: list[float], ids: list | None = None) -> list[tuple[float, float, bool]]:
    """The observed score distribution as (F below, F at or below, atom?) per distinct score, ascending. A score
    seen for two or more distinct samples is an atom of its observed share; a score seen once is a stretch of a
    continuous part (a grader's log-odds never tie; treating each as a point of mass 1/N would make best-of-n's
    KL depend on the pool's size rather than on what the grader does)."""
    total = len(scores)
    seen: dict[float, set] = defaultdict(set)
    for i, s in enumerate(scores):
        seen[s].add(ids[i] if ids is not None else i)
    count: dict[float, int] = defaultdict(int)
    for s in scores:
        count[s] += 1
    out, below = [], 0
    for s in sorted(count):
        out.append((below / total, (below + count[s]) / total, len(seen[s]) > 1))
        below += count[s]
    return out


def _kept_share(above: float, at: float, below: float, n: int, k: int) -> float:
    """P(the continuation's score is this atom) under "keep the top k of n draws (ties uniformly), go on from one
    of them uniformly": E[how many of the kept draws are at the atom] / k, summed over the multinomial counts of
    draws above and at it."""
    if k == 1:
        return (at + below) ** n - below ** n
    total = 0.0
    for a in range(min(k, n + 1)):
        for e in range(1, n - a + 1):
            ways = math.comb(n, a) * math.comb(n - a, e)
            total += ways * above ** a * at ** e * below ** (n - a - e) * min(e, k - a)
    return total / k


def _density(u: float, n: int, k: int) -> float:
    """The same policy's density against the model's at a continuous point with F = u: a draw there is kept when
    fewer than k of the other n - 1 draws are above it."""
    return n / k * sum(math.comb(n - 1, j) * (1 - u) ** j * u ** (n - 1 - j) for j in range(k))


def _continuous_part(lo: float, hi: float, n: int, k: int) -> float:
    """∫ ρ ln ρ dF over a continuous stretch [lo, hi] of F, nats."""
    if k == 1:  # ρ = n u^(n-1): a closed form, G(u) = u^n ln n + (n-1)(u^n ln u - u^n / n)
        def g(u: float) -> float:
            return 0.0 if u == 0 else u ** n * math.log(n) + (n - 1) * (u ** n * math.log(u) - u ** n / n)
        return g(hi) - g(lo)
    import numpy as np

    x, w = np.polynomial.legendre.leggauss(64)
    total = 0.0
    for xi, wi in zip((hi - lo) / 2 * x + (hi + lo) / 2, (hi - lo) / 2 * w):
        r = _density(float(xi), n, k)
        total += float(wi) * (r * math.log(r) if r > 0 else 0.0)
    return total


def top_k_of_n_kl(scores: list[float], n: int, k: int = 1, ids: list | None = None) -> float:
    """Bits: KL(top-k of n ‖ base) where the base is the observed score distribution (``_levels``): n draws, the k
    best kept (ties broken uniformly), the continuation one of the kept. k = 1 is best-of-n: ln n - (n-1)/n nats
    when no score ties, less with ties, 0 when every score is the same (such a selection is the base policy)."""
    if n < 1 or k < 1:
        raise ValueError("n and k must be at least 1")
    if k >= n or len(scores) < 2:
        return 0.0
    kl = 0.0
    for lo, hi, atom in _levels(scores, ids):
        if atom:
            ratio = _kept_share(1 - hi, hi - lo, lo, n, k) / (hi - lo)
            kl += (hi - lo) * ratio * math.log(ratio) if ratio > 0 else 0.0
        else:
            kl += _continuous_part(lo, hi, n, k)
    return max(kl, 0.0) / LN2


def _drawn_shares(weights: list[float], k: int) -> list[float]:
    """P(candidate i is among k drawn without replacement, each draw ∝ weight among those left) / k, by walking
    every ordered draw of k (the frontier's picks from one group are few; n!/(n-k)! sequences)."""
    n = len(weights)
    inclusion = [0.0] * n

    def walk(left: list[int], prob: float, depth: int, drawn: list[int]) -> None:
        if depth == k or not left:
            for i in drawn:
                inclusion[i] += prob
            return
        total = sum(weights[i] for i in left)
        for i in left:
            if weights[i] > 0:
                walk([j for j in left if j != i], prob * weights[i] / total, depth + 1, drawn + [i])

    walk(list(range(n)), 1.0, 0, [])
    return [x / min(k, n) for x in inclusion]


def tilted_kl(scores: list[float], temperature: float, k: int = 1) -> float:
    """Bits: KL(q ‖ uniform) over the observed candidates, q the tilted choice (weave's): one candidate drawn from
    softmax(score / T), against the model's own (each candidate equally likely). With ``k`` > 1, the k-th pick
    from the same candidates: k drawn without replacement, the path one of them (q: each one's chance of being
    drawn, over k)."""
    if not scores or k >= len(scores):
        return 0.0
    top = max(scores)
    weights = [math.exp((s - top) / temperature) for s in scores]
    if k == 1:
        z = sum(weights)
        shares = [w / z for w in weights]
    else:
        shares = _drawn_shares(weights, k)
    return max(0.0, sum(q * math.log(len(scores) * q) for q in shares if q > 0)) / LN2


def _scored(scores: dict[str, float | None]) -> list[float]:
    return [s for s in scores.values() if s is not None]


def top_k(scores: dict[str, float | None], k: int = 1) -> dict:
    observed = _scored(scores)
    n = len(observed)
    return {"rule": "best-of-n" if k == 1 else f"top-{k} of n", "n": n, "k": k,
            "kl_bits": top_k_of_n_kl(observed, n, k) if n else 0.0,
            "bound_bits": math.log2(n) if n else 0.0, "scores": dict(scores)}


def tilted(scores: dict[str, float | None], temperature: float, k: int = 1) -> dict:
    observed = _scored(scores)
    rule = f"tilted, T = {temperature:g}" + (f", pick {k} of the group" if k > 1 else "")
    return {"rule": rule, "n": len(observed), "k": k, "temperature": temperature,
            "kl_bits": tilted_kl(observed, temperature, k),
            "bound_bits": math.log2(len(observed)) if observed else 0.0, "scores": dict(scores)}
