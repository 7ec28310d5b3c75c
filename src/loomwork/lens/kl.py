"""Per-token KL between a model and a reference, on texts sampled from the model: the quantity a KL budget
bounds. KL(model || reference) at each position is computed over the whole vocabulary (both models must share a
tokenizer), averaged per sample, and reported with its standard error over samples."""

from __future__ import annotations

import math

from ..backends.base import Backend, SamplingParams
from ..errors import InvalidInput, Unsupported
from ..units import LN2



def mean_and_se(values: list[float]) -> tuple[float, float | None]:
    """The mean of per-sample figures and its standard error (sample variance / n); (0, None) for none, and no
    standard error (None) from a single sample: one sample says nothing about its spread."""
    n = len(values)
    if not n:
        return 0.0, None
    mean = sum(values) / n
    if n == 1:
        return mean, None
    var = sum((x - mean) ** 2 for x in values) / (n - 1)
    return mean, math.sqrt(var / n)


def check_comparable(model: Backend, reference: Backend) -> None:
    """Both models give whole distributions over one vocabulary, or one clear error."""
    for b in (model, reference):
        if not b.capabilities.distributions:
            raise Unsupported(f"{b.ref} gives no full next-token distributions (needed for per-token KL); "
                              "use local hf: models")
    if model.vocabulary_key() != reference.vocabulary_key():
        raise InvalidInput(f"{model.ref} and {reference.ref} have different tokenizers: per-token KL needs one "
                           "vocabulary (compare a tuned model with its own base)")


async def per_token_kl(model: Backend, reference: Backend, prompts: list[str], samples: int = 8,
                       max_tokens: int = 32, seed: int = 0) -> dict:
    check_comparable(model, reference)
    per_sample: list[float] = []
    tokens = 0
    for prompt in prompts:
        done = await model.complete(prompt, SamplingParams(n=samples, max_tokens=max_tokens, seed=seed))
        pre = model.encode(prompt)
        for comp in done.completions:
            ids = [t.id for t in comp.tokens]
            if not ids or any(i is None for i in ids):  # merged multi-byte records: read the ids off the text
                ids = model.continuation_ids(prompt, comp.text)[1]
            if not ids:
                continue
            kl = await model.kl_per_position(reference, pre, ids)  # nats, one per position
            per_sample.append(sum(kl) / len(kl) / LN2)
            tokens += len(ids)
    if not per_sample:
        raise InvalidInput("the model produced no tokens to measure")
    mean, se = mean_and_se(per_sample)
    return {"model": model.ref, "reference": reference.ref, "samples": len(per_sample), "tokens": tokens,
            "kl_per_token_bits": mean, "standard_error_bits": se,
            "per_sample_bits": per_sample, "parameters": {"max_tokens": max_tokens, "seed": seed, "temperature": 1.0}}
