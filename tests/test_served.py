"""Served models' samplers (backends/served.py): each kind of server is told every field it honours, and the
decoding lever's KL recovered from a server's top alternatives equals the KL over the whole distribution (the
engines' own sampler, and a float64 reference in each server's order) wherever it is given, and is None where the
alternatives do not determine it."""

from __future__ import annotations

import numpy as np
import pytest

from loomwork.backends import SamplingParams
from loomwork.backends.served import KINDS, ORDERS, decode_kl, kind_from_models, sampler_fields
from loomwork.engine.sampler import sample_array


def test_the_kind_is_read_from_the_models_list():
    assert kind_from_models({"data": [{"id": "m", "owned_by": "vllm", "root": "m", "max_model_len": 4096}]}) == "vllm"
    assert kind_from_models({"data": [{"id": "g.gguf", "owned_by": "llamacpp", "meta": {}}]}) == "llama-server"
    assert kind_from_models({"data": [{"id": "m", "owned_by": "me", "permissions": []}]}) == "llama-cpp-python"
    assert kind_from_models({"data": [{"id": "gpt", "owned_by": "openai"}]}) == "other"
    assert kind_from_models({}) == "other" and kind_from_models({"data": ["junk", None]}) == "other"


def test_every_sampler_field_is_stated_neutral_where_unset():
    p = SamplingParams(n=1)
    llama = sampler_fields("llama-server", p)
    # llama-server's own defaults are top-k 40, top-p 0.95, min-p 0.05, repeat penalty 1.1: all overridden
    assert llama["top_k"] == 0 and llama["top_p"] == 1.0 and llama["min_p"] == 0.0 and llama["repeat_penalty"] == 1.0
    assert llama["samplers"] == ["temperature", "top_k", "top_p", "min_p"]  # the engines' order, nothing else
    assert llama["dry_multiplier"] == 0 and llama["xtc_probability"] == 0 and llama["mirostat"] == 0
    vllm = sampler_fields("vllm", p)
    assert vllm["top_k"] == -1 and vllm["min_p"] == 0 and vllm["repetition_penalty"] == 1.0  # over generation_config
    lcp = sampler_fields("llama-cpp-python", p)
    assert lcp["top_k"] == 0 and lcp["min_p"] == 0 and lcp["repeat_penalty"] == 1.0
    assert sampler_fields("other", p) == {"temperature": 1.0, "top_p": 1.0}
    set_ = SamplingParams(n=1, temperature=0.7, top_k=12, top_p=0.9, min_p=0.02)
    for kind in KINDS:
        f = sampler_fields(kind, set_)
        assert (f["temperature"], f["top_p"], f["top_k"], f["min_p"]) == (0.7, 0.9, 12, 0.02)


def _kept_sets(lp: np.ndarray, p: SamplingParams, order: tuple[str, ...]) -> list[np.ndarray]:
    """The kept set after each truncation in ``order`` (temperature 1), over the whole distribution in float64."""
    probs = np.exp(lp.astype(np.float64))
    keep, out = np.ones(lp.size, bool), []
    for step in order:
        q = np.where(keep, probs, 0.0)
        q /= q.sum()
        if step == "top_k" and p.top_k:
            keep = keep & (q >= np.sort(q)[-p.top_k])
        elif step == "top_p" and p.top_p < 1:
            idx = np.argsort(-q)
            cum = np.cumsum(q[idx])
            keep = keep.copy()
            keep[idx[(cum - q[idx]) >= p.top_p]] = False
        elif step == "min_p" and p.min_p > 0:
            keep = keep & (q >= q.max() * p.min_p)
        else:
            continue
        out.append(keep)
    return out or [keep]


def _reference(lp: np.ndarray, p: SamplingParams, order: tuple[str, ...]) -> float:
    """KL(q ‖ p) over the whole distribution: −ln of the raw mass the truncations keep."""
    return float(-np.log(np.exp(lp.astype(np.float64))[_kept_sets(lp, p, order)[-1]].sum()))


def _kept_beyond(lp, p, order, k) -> bool:
    """Whether the kept set reaches past the top k after some truncation (so the top k cannot tell its mass)."""
    return any(keep.sum() >= k for keep in _kept_sets(lp, p, order))


CASES = [dict(top_k=5), dict(top_p=0.6), dict(top_p=0.9), dict(min_p=0.05), dict(min_p=0.2),
         dict(top_k=15, top_p=0.8), dict(top_k=8, min_p=0.1), dict(top_p=0.7, min_p=0.03),
         dict(top_k=20, top_p=0.95, min_p=0.01)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_truncation_kl_from_the_top_twenty_equals_the_whole_distribution(case):
    rng = np.random.default_rng(sum(map(hash, case)) % 2**32)
    p = SamplingParams(n=1, **case)
    checked = 0
    for _ in range(200):
        logits = rng.normal(0, rng.uniform(1, 4), 400)
        lp = logits - np.log(np.exp(logits).sum())
        top = sorted(lp.tolist(), reverse=True)[:20]
        for kind in ("llama-server", "vllm", "llama-cpp-python"):
            got = decode_kl(kind, p, None, top)
            want = _reference(lp, p, ORDERS[kind])
            if got is not None:
                checked += 1
                assert got == pytest.approx(want, abs=1e-9)
            else:  # None only where the kept set is not inside the top twenty, in this server's order
                assert _kept_beyond(lp, p, ORDERS[kind], 20)
        # the engines' own sampler is llama-server's order: the same figure
        got = decode_kl("llama-server", p, None, top)
        if got is not None:
            _, kl = sample_array(lp.astype(np.float64), p, np.array([], dtype=int), np.random.default_rng(0))
            assert got == pytest.approx(kl, abs=1e-9)
    assert checked > 100  # most positions are decided by their top twenty


def test_what_cannot_be_known_is_none_never_zero():
    top = [-0.1, -2.5, -3.0]
    assert decode_kl("other", SamplingParams(n=1), -0.1, top) is None  # its own defaults may have applied
    assert decode_kl("vllm", SamplingParams(n=1, temperature=0.8), -0.1, top) is None  # the whole distribution
    assert decode_kl("vllm", SamplingParams(n=1, top_k=40), -0.1, top) is None  # more kept than was returned
    assert decode_kl("vllm", SamplingParams(n=1), -0.1, top) == 0.0
    assert decode_kl("llama-server", SamplingParams(n=1, temperature=0), -0.4, top) == pytest.approx(0.4)  # greedy
