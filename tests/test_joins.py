"""Scoring text that joins the text before it inside a token (backends/joins.py), against an independent
computation of the same definition: a plain forward pass in float64 over the canonical tokens of the whole text,
and "tokens that start with x" found by decoding every token of the vocabulary."""

import asyncio
import math

import pytest

from loomwork.backends.joins import PieceIndex, plan

torch = pytest.importorskip("torch")


def test_piece_index_finds_every_token_starting_with_a_text():
    pieces = ["the", "th", "t", " the", None, "a", "then", "", "tha", "x"]
    index = PieceIndex(pieces)
    for query in ["t", "th", "the", " ", "a", "q", "then", "x"]:
        want = tuple(i for i, p in enumerate(pieces) if p and p.startswith(query))
        assert index.starting_with(query) == want


def test_plan_on_a_join_inside_a_token():
    index = PieceIndex(["<s>", "I", " saw", " the", " th", " cat", " cats", "e"])
    text = "I saw the cat"  # the context "I saw th" ends inside " the"
    ids = [0, 1, 2, 3, 5]
    offsets = [(0, 0), (0, 1), (1, 5), (5, 9), (9, 13)]
    terms = plan(text, ids, offsets, 8, index)
    assert [(t.position, t.candidates, t.sign, t.text) for t in terms] == [
        (3, 3, 1, "e"),  # the rest of " the" …
        (4, (5, 6), 1, " cat"),  # … then any token starting with " cat" (the text may go on)
        (3, (3, 4), -1, ""),  # … given that the token after " saw" starts with " th"
    ]
    assert plan(text, ids, offsets, len(text), index) == []


def _reference(lm, tok, context: str, text: str) -> float:
    """log P(text | context) by the definition, computed without loomwork."""
    full = context + text
    enc = tok(full, add_special_tokens=True, return_offsets_mapping=True)
    ids, offs = enc["input_ids"], enc["offset_mapping"]
    with torch.no_grad():
        lp = torch.log_softmax(lm(input_ids=torch.tensor([ids])).logits[0].double(), -1)
    anchor = tok.encode("a", add_special_tokens=False)
    a_text = tok.decode(anchor)
    special = set(tok.all_special_ids)
    vocab = [None if v in special else tok.decode(anchor + [v])[len(a_text):] for v in range(lm.config.vocab_size)]

    def starting_with(pos: int, prefix: str) -> float:
        hits = [v for v, p in enumerate(vocab) if p and p.startswith(prefix)]
        return math.log(sum(math.exp(float(lp[pos - 1, v])) for v in hits))

    a = next(j for j in range(1, len(ids)) if offs[j][1] > len(context))
    k = len(ids) - 1
    total = sum(float(lp[j - 1, ids[j]]) for j in range(a, k)) + starting_with(k, full[offs[k][0]:])
    if offs[a][0] < len(context):
        total -= starting_with(a, full[offs[a][0]:len(context)])
    return total


JOINS = [("I saw t", "he cat"),
         ("Then th", "ere was"), ("an", "d then"), ("It is ", "the end"), ("We", " ran the"), ("The", "")]


@pytest.fixture(scope="module")
def tiny_gemma():
    from tests.tiny_model import build_tiny_gemma

    return build_tiny_gemma(window=8)


@pytest.mark.parametrize("context,text", [j for j in JOINS if j[1]])
def test_segment_scores_match_the_definition(tiny_gemma, context, text):
    from loomwork.backends.hf import HFBackend

    lm, tok = tiny_gemma
    backend = HFBackend("tiny", lm=lm, tokenizer=tok)
    got = asyncio.run(backend.score_segments([context, text, " and more after it"], [1]))[1]
    assert "".join(t.text for t in got) == text
    assert sum(t.logprob for t in got) == pytest.approx(_reference(lm, tok, context, text), abs=1e-4)
    single = asyncio.run(backend.score(context, text, top=3))
    assert sum(t.logprob for t in single) == pytest.approx(_reference(lm, tok, context, text), abs=1e-4)


def test_every_segment_of_a_path_in_one_pass(tiny_gemma):
    from loomwork.backends.hf import HFBackend

    lm, tok = tiny_gemma
    backend = HFBackend("tiny", lm=lm, tokenizer=tok)
    segments = ["", "Then th", "ere was an", "d then ", "the end", " of it."]
    got = asyncio.run(backend.score_segments(segments, [1, 2, 3, 4, 5]))
    for i in range(1, len(segments)):
        ref = _reference(lm, tok, "".join(segments[:i]), segments[i])
        assert sum(t.logprob for t in got[i]) == pytest.approx(ref, abs=1e-4), i


def test_a_join_no_longer_scores_an_unlikely_token_path(tiny_gemma):
    """The old way: the continuation tokenised on its own after the context's tokens ("t" | "he"); the model
    reads "the" as one token, so that path is far less likely than the text."""
    from loomwork.backends.hf import HFBackend

    lm, tok = tiny_gemma
    backend = HFBackend("tiny", lm=lm, tokenizer=tok)
    context, text = "I saw t", "he cat"
    old_ids = tok.encode(context) + tok.encode(text, add_special_tokens=False)
    with torch.no_grad():
        lp = torch.log_softmax(lm(input_ids=torch.tensor([old_ids])).logits[0].double(), -1)
    n = len(tok.encode(context))
    old = sum(float(lp[j - 1, old_ids[j]]) for j in range(n, len(old_ids)))
    new = _reference(lm, tok, context, text)
    assert tok.encode(context + text) != old_ids  # the join really is inside a token
    got = asyncio.run(backend.score_segments([context, text], [1]))[1]
    assert sum(t.logprob for t in got) == pytest.approx(new, abs=1e-4)
    assert abs(new - old) > 0.1


def test_answers_after_a_prompt_ending_in_a_space(tiny_gemma):
    from loomwork.backends.hf import HFBackend
    from loomwork.lens.distributions import answer_distribution

    lm, tok = tiny_gemma
    backend = HFBackend("tiny", lm=lm, tokenizer=tok)
    prompt, answers = "Is it the end? ", ["the end", "then", "an"]
    rows = asyncio.run(backend.score_answers(prompt, answers, ["\n", "."]))
    for answer, row in zip(answers, rows):
        assert row == pytest.approx([_reference(lm, tok, prompt, answer + t) for t in ["\n", "."]], abs=1e-4)
    dist = asyncio.run(answer_distribution(backend, prompt, answers, ["\n", "."]))
    assert sum(dist.probs) == pytest.approx(1.0)
