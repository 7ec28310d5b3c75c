import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loomwork.backends import SamplingParams, get_backend
from loomwork.backends.base import StopScanner
from loomwork.backends.mock import tokenize
from loomwork.errors import InvalidInput, NotFound
from loomwork.tree import Token


async def test_seed_reproduces_and_n_is_honoured():
    b = get_backend("mock")
    p = SamplingParams(n=5, max_tokens=12, seed=42)
    a, c = await b.complete("Once", p), await b.complete("Once", p)
    assert [x.text for x in a.completions] == [x.text for x in c.completions]
    assert len(a.completions) == 5
    assert all(len(x.tokens) <= 12 for x in a.completions)
    other = await b.complete("Once", p.model_copy(update={"seed": 43}))
    assert [x.text for x in other.completions] != [x.text for x in a.completions]


async def test_logprobs_agree_with_scoring_and_next_token():
    b = get_backend("mock")
    done = await b.complete("The river", SamplingParams(n=3, max_tokens=10, seed=7))
    for comp in done.completions:
        assert "".join(t.text for t in comp.tokens) == comp.text
        prefix = "The river"
        for tok in comp.tokens:
            dist = dict(await b.next_token(prefix, k=500))
            assert math.isclose(dist[tok.text], tok.logprob)
            prefix += tok.text
        assert len(tok.top) == 5
    dist = await b.next_token("x", k=10_000)
    assert math.isclose(sum(math.exp(lp) for _, lp in dist), 1.0, rel_tol=1e-9)


async def test_stop_sequences_cut_the_text():
    b = get_backend("mock")
    free = await b.complete("A", SamplingParams(n=1, max_tokens=40, seed=1, temperature=0))
    word = free.completions[0].tokens[3].text  # a token the greedy sample is known to produce
    stopped = await b.complete("A", SamplingParams(n=1, max_tokens=40, seed=1, temperature=0, stop=[word]))
    comp = stopped.completions[0]
    assert word not in comp.text and free.completions[0].text.startswith(comp.text)
    assert comp.finish_reason == "stop"


@pytest.mark.parametrize("kwargs, field", [({"n": 0}, "n"), ({"n": 65}, "n"), ({"max_tokens": -1}, "max_tokens"),
                                           ({"top_p": 0}, "top_p"), ({"bogus": 1}, "bogus")])
def test_bad_sampling_parameters_are_named(kwargs, field):
    with pytest.raises(InvalidInput, match=field):
        SamplingParams.make(**kwargs)


def test_unknown_models_are_clear():
    for ref in ["nope", "nope:thing", "mock:whatever", "hf:not-a-model"]:
        with pytest.raises(NotFound):
            get_backend(ref)


def test_mock_tokenizer_covers_any_text():
    assert "".join(tokenize(" the loom 🙂 x")) == " the loom 🙂 x"


@given(st.lists(st.text(min_size=1, max_size=4), min_size=1, max_size=20),
       st.lists(st.text(min_size=1, max_size=3), max_size=2))
def test_stop_scanner_tiles_text_and_never_includes_a_stop(pieces, stops):
    sc = StopScanner(stops)
    out = []
    for p in pieces:
        out += sc.push(Token(p, -1.0))
    out += sc.flush()
    text = "".join(t.text for t in out)
    full = "".join(pieces)
    assert full.startswith(text)
    for s in stops:
        assert s not in text
    if not sc.stopped:
        assert text == full
    else:
        cut = min(i for i in (full.find(s) for s in stops) if i >= 0)
        assert text == full[:cut]
