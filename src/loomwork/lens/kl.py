"""Per-token KL between a model and a reference, on texts sampled from the model: the quantity a KL budget
bounds. KL(model || reference) at each position is computed over the whole vocabulary (both models must share a
tokenizer), averaged per sample, and reported with its standard error over samples."""

from __future__ import annotations

import math
from functools import partial

from ..backends.base import Backend, SamplingParams
from ..backends.model_thread import shared as shared_model_thread
from ..errors import InvalidInput, Unsupported

LN2 = math.log(2)


def _full_logprobs(backend, prompt_ids: list[int], ids: list[int]):
    """log-softmax over the vocabulary at each position of ``ids`` after ``prompt_ids`` (teacher-forced)."""
    torch = backend.torch
    with backend._model_thread.urgent(), torch.inference_mode():
        logits = backend.lm(input_ids=torch.tensor([prompt_ids + ids])).logits[0].float()
    return torch.log_softmax(logits[len(prompt_ids) - 1 : -1], -1)


def _sample_kl(model, reference, prompt_ids: list[int], ids: list[int]) -> float:
    """KL(model ‖ reference) in bits, averaged over the positions of one sample."""
    lp_m = _full_logprobs(model, prompt_ids, ids)
    lp_r = _full_logprobs(reference, prompt_ids, ids)
    kl = (lp_m.exp() * (lp_m - lp_r)).sum(-1)  # nats, one per position
    return float(kl.mean()) / LN2


def mean_and_se(values: list[float]) -> tuple[float, float]:
    """The mean of per-sample figures and its standard error (sample variance / n); (0, 0) for none."""
    n = len(values)
    if not n:
        return 0.0, 0.0
    mean = sum(values) / n
    var = sum((x - mean) ** 2 for x in values) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var / n)


def _check(model: Backend, reference: Backend) -> None:
    for b in (model, reference):
        if not hasattr(b, "lm"):
            raise Unsupported(f"{b.ref} gives no full next-token distributions (needed for per-token KL); "
                              "use local hf: models")
    if model.tok.get_vocab() != reference.tok.get_vocab():
        raise InvalidInput(f"{model.ref} and {reference.ref} have different tokenizers: per-token KL needs one "
                           "vocabulary (compare a tuned model with its own base)")


async def per_token_kl(model: Backend, reference: Backend, prompts: list[str], samples: int = 8,
                       max_tokens: int = 32, seed: int = 0) -> dict:
    _check(model, reference)
    per_sample: list[float] = []
    tokens = 0
    for prompt in prompts:
        done = await model.complete(prompt, SamplingParams(n=samples, max_tokens=max_tokens, seed=seed))
        pre = model.encode(prompt)
        for comp in done.completions:
            ids = [t.id for t in comp.tokens]
            if not ids or any(i is None for i in ids):  # merged multi-byte records: read the ids off the text
                ids = model._continuation_ids(prompt, comp.text)[1]
            if not ids:
                continue
            # on the model thread, like all of these models' tensor work (backends/model_thread.py)
            per_sample.append(await shared_model_thread().call(partial(_sample_kl, model, reference, pre, ids)))
            tokens += len(ids)
    if not per_sample:
        raise InvalidInput("the model produced no tokens to measure")
    mean, se = mean_and_se(per_sample)
    return {"model": model.ref, "reference": reference.ref, "samples": len(per_sample), "tokens": tokens,
            "kl_per_token_bits": mean, "standard_error_bits": se,
            "per_sample_bits": per_sample, "parameters": {"max_tokens": max_tokens, "seed": seed, "temperature": 1.0}}
