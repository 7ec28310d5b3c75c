"""The hf backend on a tiny random model built here: exact logprobs, seeds, stops, streaming."""

import math

import pytest

torch = pytest.importorskip("torch")

from loomwork.backends import SamplingParams  # noqa: E402
from loomwork.backends.base import Done, TokenEvent  # noqa: E402
from loomwork.backends.hf import HFBackend  # noqa: E402


@pytest.fixture(scope="module")
def backend(tiny_lm):
    lm, tok = tiny_lm
    return HFBackend("tiny", lm=lm, tokenizer=tok)


PREFIX = "The loom hums"


async def test_sampled_logprobs_equal_teacher_forced(backend):
    done = await backend.complete(PREFIX, SamplingParams(n=4, max_tokens=24, seed=11, top_k=20, temperature=1.3))
    prefix_ids = backend.encode(PREFIX)
    checked = 0
    for comp in done.completions:
        ids = [t.id for t in comp.tokens]
        if not ids:
            continue
        with torch.no_grad():
            logits = backend.lm(input_ids=torch.tensor([prefix_ids + ids])).logits[0].float()
        lp = torch.log_softmax(logits, -1)
        for pos, tok in enumerate(comp.tokens):
            expected = float(lp[len(prefix_ids) - 1 + pos, tok.id])
            assert abs(tok.logprob - expected) < 1e-4
            checked += 1
        # the backend's own scoring of the text gives the same numbers (a character tokenizer is unambiguous)
        scored = await backend.score(PREFIX, comp.text)
        assert [t.text for t in scored] == [t.text for t in comp.tokens]
        assert max(abs(a.logprob - b.logprob) for a, b in zip(scored, comp.tokens)) < 1e-4
    assert checked > 20


async def test_top_alternatives_are_sorted_and_include_the_best(backend):
    done = await backend.complete(PREFIX, SamplingParams(n=1, max_tokens=8, seed=3, logprobs=5))
    for tok in done.completions[0].tokens:
        lps = [lp for _, lp in tok.top]
        assert len(lps) == 5 and lps == sorted(lps, reverse=True)
        assert tok.logprob <= lps[0] + 1e-6
    dist = await backend.next_token(PREFIX, k=len(backend.tok))
    assert math.isclose(sum(math.exp(lp) for _, lp in dist), 1.0, rel_tol=1e-4)


async def test_seed_reproduces_samples(backend):
    p = SamplingParams(n=3, max_tokens=16, seed=5)
    a, b = await backend.complete(PREFIX, p), await backend.complete(PREFIX, p)
    assert [c.text for c in a.completions] == [c.text for c in b.completions]
    c = await backend.complete(PREFIX, p.model_copy(update={"seed": 6}))
    assert [x.text for x in c.completions] != [x.text for x in a.completions]


async def test_greedy_matches_argmax(backend):
    done = await backend.complete(PREFIX, SamplingParams(n=2, max_tokens=6, temperature=0))
    assert done.completions[0].text == done.completions[1].text
    for tok in done.completions[0].tokens:
        assert math.isclose(tok.logprob, tok.top[0][1], abs_tol=1e-6)


async def test_stream_yields_tokens_then_done(backend):
    events = [e async for e in backend.stream(PREFIX, SamplingParams(n=2, max_tokens=5, seed=1))]
    assert isinstance(events[-1], Done)
    streamed = {0: "", 1: ""}
    for e in events[:-1]:
        assert isinstance(e, TokenEvent)
        streamed[e.index] += e.token.text
    assert [streamed[0], streamed[1]] == [c.text for c in events[-1].completions]


async def test_stop_sequence(backend):
    free = await backend.complete(PREFIX, SamplingParams(n=1, max_tokens=30, seed=9))
    text = free.completions[0].text
    stop = text[5:7]
    cut = await backend.complete(PREFIX, SamplingParams(n=1, max_tokens=30, seed=9, stop=[stop]))
    assert cut.completions[0].text == text[: text.find(stop)]
    assert cut.completions[0].finish_reason == "stop"


async def test_loads_a_local_hugging_face_directory(tiny_lm, tmp_path):
    from loomwork.backends import get_backend

    lm, tok = tiny_lm
    lm.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    backend = get_backend(f"hf:{tmp_path / 'tiny'}")
    done = await backend.complete(PREFIX, SamplingParams(n=2, max_tokens=5, seed=1))
    ref = await HFBackend("tiny", lm=lm, tokenizer=tok).complete(PREFIX, SamplingParams(n=2, max_tokens=5, seed=1))
    assert [c.text for c in done.completions] == [c.text for c in ref.completions]


def test_a_directory_that_is_not_a_model_is_refused(tmp_path):
    from loomwork.backends import get_backend
    from loomwork.errors import NotFound

    with pytest.raises(NotFound, match="no config.json"):
        get_backend(f"hf:{tmp_path}")


def test_draw_samples_the_given_distribution(backend):
    """The inverse-CDF draw used for sampling: frequencies match the probabilities, a zero is never drawn."""
    probs = torch.tensor([[0.5, 0.0, 0.3, 0.2, 0.0]] * 4000)
    gen = torch.Generator().manual_seed(0)
    drawn = torch.cat([backend._draw(probs, gen) for _ in range(5)])
    freq = torch.bincount(drawn, minlength=5).double() / drawn.numel()
    assert freq[1] == 0 and freq[4] == 0
    assert torch.allclose(freq, probs[0].double(), atol=0.01)  # 20,000 draws: sd about 0.0035
