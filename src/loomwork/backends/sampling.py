"""Pure-Python sampling over a small logit vector (the mock backend's); the torch backend has its own."""

from __future__ import annotations

import math
import random
from typing import Sequence

from .base import SamplingParams


def log_softmax(logits: Sequence[float]) -> list[float]:
    m = max(logits)
    z = m + math.log(sum(math.exp(x - m) for x in logits))
    return [x - z for x in logits]


def sample_index(logprobs: Sequence[float], params: SamplingParams, rng: random.Random) -> int:
    """Draw one index under temperature, top-k, top-p and min-p, applied in vLLM's order."""
    order = sorted(range(len(logprobs)), key=lambda i: -logprobs[i])
    if params.temperature == 0:
        return order[0]
    scaled = log_softmax([logprobs[i] / params.temperature for i in order])
    keep = len(order)
    if params.top_k:
        keep = min(keep, params.top_k)
    if params.top_p < 1.0:
        total, cut = 0.0, 0
        for cut, lp in enumerate(scaled[:keep], 1):
            total += math.exp(lp)
            if total >= params.top_p:
                break
        keep = cut
    if params.min_p > 0:
        floor = math.log(params.min_p) + scaled[0]
        keep = max(1, sum(1 for lp in scaled[:keep] if lp >= floor))
    weights = [math.exp(lp) for lp in scaled[:keep]]
    return order[rng.choices(range(keep), weights=weights)[0]]
