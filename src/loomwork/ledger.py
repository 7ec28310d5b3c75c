"""The optimization ledger: every lever that shaped a node, each in bits (definitions: docs/metrics.md).

- selection: log2(n/m) for a person's 1-of-n choice (its optimization power), and beside it the KL of that choice
  seen as a best-of-n policy, which for an unknown ranking is bounded by ln n - (n-1)/n nats (best_of_n_kl_bound);
  when the outcomes and their ranking are known, the exact discrete formula (best_of_n_kl_exact).
- writing: -log2 p of the text a person wrote or changed, under the reference model (curation.py scores it).
- decoding: Σ over a node's tokens of KL(sampling distribution ‖ model distribution), recorded as it was sampled.
- steering: Σ over a steered node's tokens of KL(steered ‖ unsteered next-token distribution), recorded likewise.
- model: Σ per-token KL(generating model ‖ reference) for a node another model generated (model_kl.py).
- grader: the KL of a grader's selection policy from the model's, over the scores it observed (best-of-n and beam:
  top-k of n with ties, tilted: the softmax at its temperature); log2 n only as the labelled upper bound.

Each figure is a number, or None with a note saying why it is unknown; nothing is guessed.
"""

from __future__ import annotations

import math
from collections import defaultdict

from .tree import Node

LN2 = math.log(2)
LEVERS = ("selection", "writing", "decoding", "steering", "model", "grader")


def best_of_n_kl_bound(n: int) -> float:
    """Bits: the KL of the best-of-n policy from the base policy is at most ln n - (n-1)/n nats, with equality
    for continuous (never tied) outcomes (Beirami et al., 2024)."""
    return (math.log(n) - (n - 1) / n) / LN2 if n > 1 else 0.0


def best_of_n_distribution(probs: list[float], rewards: list[float], n: int) -> list[float]:
    """The distribution of the best of n independent draws from ``probs`` by ``rewards`` (ties broken uniformly
    among the tied draws): P_n(y) = (F(r_y)^n - F(r_y-)^n) × p(y) / P(r = r_y), F the reward's distribution."""
    mass = defaultdict(float)
    for p, r in zip(probs, rewards):
        mass[r] += p
    below, cdf = {}, 0.0
    for r in sorted(mass):
        below[r] = cdf
        cdf += mass[r]
    total = cdf
    out = []
    for p, r in zip(probs, rewards):
        lo, hi = below[r] / total, (below[r] + mass[r]) / total
        out.append((hi ** n - lo ** n) * (p / mass[r]) if mass[r] > 0 else 0.0)
    return out


def best_of_n_kl_exact(probs: list[float], rewards: list[float], n: int) -> float:
    """Bits: KL(best-of-n ‖ base) for a discrete distribution whose outcomes and rewards are known."""
    total = sum(probs)
    pn = best_of_n_distribution(probs, rewards, n)
    return sum(q * math.log(q / (p / total)) for q, p in zip(pn, probs) if q > 0) / LN2


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


def tilted_kl(scores: list[float], temperature: float) -> float:
    """Bits: KL(softmax(score / T) ‖ uniform) over the observed candidates: a choice drawn from the tilted
    distribution (weave's), against the model's own (each candidate equally likely)."""
    if not scores:
        return 0.0
    top = max(scores)
    weights = [math.exp((s - top) / temperature) for s in scores]
    z = sum(weights)
    return max(0.0, sum(w / z * math.log(len(scores) * w / z) for w in weights if w > 0)) / LN2


def _neutral(params: dict) -> bool:
    return (params.get("temperature", 1.0) == 1.0 and params.get("top_p", 1.0) == 1.0
            and not params.get("top_k") and not params.get("min_p"))


def _tokens(node: Node):
    return [t for t in node.tokens if not t.cont]  # a split token's second record repeats its figures


def _recorded(node: Node, field: str) -> float | None:
    values = [getattr(t, field) for t in _tokens(node)]
    if any(v is None for v in values) or (node.text and not values):  # text without token records: an import
        return None
    return sum(values) / LN2


def decoding_bits(node: Node, gen: dict | None) -> tuple[float | None, str | None]:
    """What temperature and truncation did to a model node, in bits, or (None, why)."""
    if node.origin != "model" or "alternative_of" in node.meta:
        return 0.0, None
    recorded = _recorded(node, "decode_kl")
    if recorded is not None:
        return recorded, None
    if gen is not None and _neutral(gen.get("params") or {}):
        return 0.0, None  # sampled at temperature 1 without truncation: the model's own distribution
    if gen is None:
        return None, "no generation record (imported): its decoding settings are not known"
    return None, "generated before per-token KL was recorded (or by a server that does not show it)"


def steering_bits(node: Node, gen: dict | None) -> tuple[float | None, str | None]:
    if node.origin != "model" or "alternative_of" in node.meta:
        return 0.0, None
    steer = ((gen or {}).get("params") or {}).get("steer") or node.meta.get("steered") or []
    if not any(s.get("coef") for s in steer):
        return (0.0, None) if gen is not None else (None, "no generation record (imported)")
    recorded = _recorded(node, "steer_kl")
    if recorded is None:
        return None, "steered, but the tokens lack the unsteered distribution"
    return recorded, None


def model_bits(node: Node, gen: dict | None, ref: str | None, computed: dict[str, float | None]
               ) -> tuple[float | None, str | None]:
    """0 for a node the reference model itself generated; for another model's node the KL computed by model_kl.py
    (``computed``), else (None, why)."""
    if node.origin != "model" or "alternative_of" in node.meta:
        return 0.0, None
    if gen is None:
        return None, "no generation record (imported): which model wrote it is not known"
    made_by = f"{gen['backend']}:{gen['model']}"
    if ref is None or made_by == ref:
        return 0.0, None
    if node.id in computed:
        value = computed[node.id]
        return (value, None) if value is not None else (None, f"{made_by} and {ref} are not comparable (another "
                                                              "tokenizer, or no full distributions)")
    return None, (f"generated by {made_by}, not the reference {ref}: KL not computed (loomwork bits --model-kl, or "
                  "the ledger panel's button)")
