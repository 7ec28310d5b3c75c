"""The selection lever: a person's 1-of-n choice among siblings applies log2(n/m) bits (m: how many they marked
acceptable first); read as a best-of-n policy, its KL from the model is at most ln n − (n−1)/n nats (the person's
ranking of every outcome is unknown), and exact where the outcomes and their rewards are known."""

from __future__ import annotations

import math
from collections import defaultdict

from ..errors import InvalidInput
from ..units import LN2


def selection_bits(n: int, m: int = 1) -> float:
    if not 1 <= m <= n:
        raise InvalidInput(f"acceptable must be between 1 and the {n} candidates, not {m}")
    return math.log2(n / m)


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
