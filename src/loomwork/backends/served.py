"""What a served model is told and what can be known of its sampling: the kinds of OpenAI-compatible server,
every sampler field each one honours (so no server default shapes a sample unseen), and the decoding lever's KL
recovered from the top alternatives a server returns, where they determine it exactly.

A server fills every field a request leaves out with its own default: llama-server samples with top-k 40,
top-p 0.95, min-p 0.05 and a repeat penalty; llama-cpp-python likewise; vLLM applies the model's
generation_config.json. So each request states every field the server's kind honours, neutral where the person
set none, and a server whose kind is not known is charged "unknown", never 0 (docs/backends.md)."""

from __future__ import annotations

import math

from .base import SamplingParams

KINDS = ("vllm", "llama-server", "llama-cpp-python", "other")
LABELS = {"vllm": "vLLM server", "llama-server": "llama-server", "llama-cpp-python": "llama-cpp-python server",
          "other": "server"}
# the engines' own order (engine/sampler.py); llama-server is told to use it, the others have their own
OUR_ORDER = ("temperature", "top_k", "top_p", "min_p")
ORDERS = {"vllm": ("temperature", "min_p", "top_k", "top_p"), "llama-server": OUR_ORDER,
          "llama-cpp-python": ("top_k", "top_p", "min_p", "temperature")}
UNKNOWN_KIND = ("the server's kind is not known, so its own sampler defaults (top-k, min-p, penalties) may have "
                "shaped the samples: name it with ?server=vllm, llama-server or llama-cpp-python")
TOP_FOR_KL = 20  # alternatives asked for when truncation is on, so that its KL can be recovered from them


def kind_from_models(listing: dict) -> str:
    """The server's kind from its ``/v1/models`` answer: vLLM and llama-server say who owns their models;
    llama-cpp-python says "me" with an empty permission list."""
    models = [m for m in listing.get("data") or [] if isinstance(m, dict)]
    owners = {m.get("owned_by") for m in models}
    if "vllm" in owners:
        return "vllm"
    if "llamacpp" in owners:
        return "llama-server"
    if "me" in owners and all("permissions" in m for m in models):
        return "llama-cpp-python"
    return "other"


def sampler_fields(kind: str, params: SamplingParams) -> dict:
    """Every sampler field ``kind`` honours, as the request states it: the person's settings, and neutral values
    for everything else (penalties off, no typical-p, no mirostat, no DRY or XTC)."""
    fields = {"temperature": params.temperature, "top_p": params.top_p}
    if kind == "vllm":
        fields.update(top_k=params.top_k or -1, min_p=params.min_p, repetition_penalty=1.0, presence_penalty=0.0,
                      frequency_penalty=0.0)
    elif kind == "llama-server":
        fields.update(top_k=params.top_k, min_p=params.min_p, typical_p=1.0, repeat_penalty=1.0, repeat_last_n=0,
                      presence_penalty=0.0, frequency_penalty=0.0, dry_multiplier=0.0, xtc_probability=0.0,
                      top_n_sigma=-1.0, dynatemp_range=0.0, mirostat=0, samplers=list(OUR_ORDER))
    elif kind == "llama-cpp-python":
        fields.update(top_k=params.top_k, min_p=params.min_p, repeat_penalty=1.0, presence_penalty=0.0,
                      frequency_penalty=0.0, typical_p=1.0, tfs_z=1.0, mirostat_mode=0)
    else:  # the standard fields only; an extension the person set is still sent (the server may refuse it)
        if params.top_k:
            fields["top_k"] = params.top_k
        if params.min_p:
            fields["min_p"] = params.min_p
    return fields


def differences(sent: dict, applied: dict) -> list[str]:
    """The sampler fields a server says it applied with values other than those sent (floats to float32's
    precision: servers keep them as float32), as "field=applied (sent sent)"."""
    out = []
    for key, want in sent.items():
        if key not in applied:
            continue
        got = applied[key]
        same = (math.isclose(float(got), float(want), rel_tol=1e-6, abs_tol=1e-7)
                if isinstance(want, (int, float)) and isinstance(got, (int, float)) else got == want)
        if not same:
            out.append(f"{key}={got!r} (sent {want!r})")
    return out


def truncates(params: SamplingParams) -> bool:
    return bool(params.top_k) or params.top_p < 1.0 or params.min_p > 0


def decode_kl(kind: str, params: SamplingParams, logprob: float | None, top: list[float]) -> float | None:
    """KL(sampling distribution ‖ model distribution) in nats at one position, from what the server returned:
    the sampled token's raw logprob and the raw logprobs of its top alternatives (descending), or None where
    they do not determine it. Exact cases: temperature 0 (a point mass: −log p(chosen)); temperature 1 without
    truncation (0); temperature 1 with truncation whose kept set lies inside the alternatives returned, in the
    server's own order of truncations (KL = −log of the raw mass kept). Any other temperature reshapes the
    whole distribution, which no server returns."""
    if kind == "other":
        return None
    if params.temperature == 0:
        return None if logprob is None else max(0.0, -logprob)
    if params.temperature != 1.0:
        return None
    if not truncates(params):
        return 0.0
    kept = _kept(sorted((math.exp(x) for x in top), reverse=True), params, ORDERS[kind])
    return None if kept is None else max(0.0, -math.log(kept))


def _kept(probs: list[float], params: SamplingParams, order: tuple[str, ...]) -> float | None:
    """The raw probability mass the truncations keep, applied in ``order`` to ``probs`` (the top of the
    distribution, descending; the rest of the vocabulary holds 1 − their sum), or None if the top is too short
    to tell. Temperature is 1 here, so it is not a step. The kept set is always a prefix of the sorted
    distribution: ``n`` its length, "all" the whole vocabulary, "more" longer than ``probs`` (mass unknown)."""
    n: int | str = "all"
    tail = max(0.0, 1.0 - sum(probs))
    for step in order:
        if step == "top_k" and params.top_k:
            if isinstance(n, int):
                n = min(n, params.top_k)
            else:
                n = params.top_k if params.top_k <= len(probs) else "more"
        elif step == "top_p" and params.top_p < 1.0:
            if n == "more":
                return None  # the mass to renormalise by is not known
            total = 1.0 if n == "all" else sum(probs[:n])
            limit = len(probs) if n == "all" else n
            cum, i = 0.0, 0
            while i < limit and cum < params.top_p * total:
                cum += probs[i]
                i += 1
            n = i if cum >= params.top_p * total else "more"
        elif step == "min_p" and params.min_p > 0 and probs:
            floor = probs[0] * params.min_p  # relative to the top token: the same before or after renormalising
            limit = len(probs) if not isinstance(n, int) else n
            i = sum(1 for p in probs[:limit] if p >= floor)
            n = "more" if not isinstance(n, int) and i == len(probs) and tail > 0 else i
    if n == "more":
        return None
    return 1.0 if n == "all" else sum(probs[:n])
