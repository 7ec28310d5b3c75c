"""The decoding lever: temperature, top-p, top-k and min-p reshape the model's next-token distribution p into the
sampling distribution q; each token records KL(q ‖ p) as it is sampled (``decode_kl``), and a node's decoding
bits are their sum. The settings themselves are SamplingParams' fields named in FIELDS; NEUTRAL their values that
leave p as it is."""

from __future__ import annotations

from ..tree import Node
from ..units import LN2

FIELDS = ("temperature", "top_p", "top_k", "min_p")
NEUTRAL = {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0}


def neutral(params: dict) -> bool:
    return (params.get("temperature", 1.0) == 1.0 and params.get("top_p", 1.0) == 1.0
            and not params.get("top_k") and not params.get("min_p"))


def sampled_tokens(node: Node):
    return [t for t in node.tokens if not t.cont]  # a split token's second record repeats its figures


def recorded(node: Node, field: str) -> float | None:
    values = [getattr(t, field) for t in sampled_tokens(node)]
    if any(v is None for v in values) or (node.text and not values):  # text without token records: an import
        return None
    return sum(values) / LN2


def decoding_bits(node: Node, gen: dict | None) -> tuple[float | None, str | None]:
    """What temperature and truncation did to a model node, in bits, or (None, why)."""
    if node.origin != "model" or "alternative_of" in node.meta:
        return 0.0, None
    total = recorded(node, "decode_kl")
    if total is not None:
        return total, None
    if gen is not None and neutral(gen.get("params") or {}):
        return 0.0, None  # sampled at temperature 1 without truncation: the model's own distribution
    if gen is None:
        return None, "no generation record (imported): its decoding settings are not known"
    return None, "generated before per-token KL was recorded (or by a server that does not show it)"
