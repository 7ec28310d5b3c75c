"""The optimization ledger: every lever that shaped a node, each in bits (definitions: docs/metrics.md).

- selection: log2(n/m) for a person's 1-of-n choice (its optimization power), and beside it the KL of that choice
  seen as a best-of-n policy, which for an unknown ranking is bounded by ln n - (n-1)/n nats (best_of_n_kl_bound);
  when the outcomes and their ranking are known, the exact discrete formula (best_of_n_kl_exact).
- writing: -log2 p of the text a person wrote or changed, under the reference model (curation.py scores it).
- decoding: Σ over a node's tokens of KL(sampling distribution ‖ model distribution), recorded as it was sampled.
- steering: Σ over a steered node's tokens of KL(steered ‖ unsteered next-token distribution), recorded likewise.
- model: Σ per-token KL(generating model ‖ reference) for a node another model generated (model_kl.py).
- grader: log2 n for a grader's 1-of-n choice (best-of-n, autoloom), beside the person's selection.

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
