"""The radix cache of key/value states: the same numbers with it as without, on a sliding-window model, at every
way a loom reuses a prefix (a child, a re-branch, an edit, a split, human text after a model node), within its
budget; and the token-boundary rule: a node's logprobs are those of the ids the model actually produced."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from loomwork.backends import SamplingParams  # noqa: E402
from loomwork.backends.hf import HFBackend  # noqa: E402
from loomwork.engine.kv_cache import PrefixCache, parse_budget  # noqa: E402
from loomwork.errors import InvalidInput  # noqa: E402
from tests.tiny_model import build_tiny_gemma  # noqa: E402


# -- the radix tree on its own ---------------------------------------------------------------------------------

def kv_of(ids, layers=2, width=4):
    """A stand-in state whose values say which token they belong to, so a wrong slice shows."""
    t = torch.tensor(ids, dtype=torch.float32)[None, None, :, None].expand(1, 1, len(ids), width).clone()
    return [(t + 100 * i, -t - 100 * i) for i in range(layers)]


def test_match_insert_split_and_the_state_of_any_prefix():
    cache = PrefixCache(10**6)
    cache.insert([1, 2, 3, 4, 5], kv_of([1, 2, 3, 4, 5]))
    cache.insert([1, 2, 3, 9, 9, 9], kv_of([1, 2, 3, 9, 9, 9]))  # splits the edge after 3
    for ids, expect in [([1, 2, 3, 4, 5, 6], 5), ([1, 2, 3, 9, 9], 5), ([1, 2, 7], 2), ([8], 0), ([1, 2, 3, 9, 9, 9, 1], 6)]:
        n, layers = cache.match(ids)
        assert n == expect
        if n:
            assert layers[1][0][0, 0, :, 0].tolist() == [x + 100 for x in ids[:n]]
            assert layers[1][1][0, 0, :, 0].tolist() == [-x - 100 for x in ids[:n]]
    assert cache.match([1, 2, 3, 4, 5], limit=2)[0] == 2
    s = cache.stats()
    assert s["entries"] == 3 and s["tokens"] == 8 and s["hits"] == 5 and s["misses"] == 1
    assert s["bytes"] == 8 * 2 * 2 * 4 * 4  # tokens x layers x (k, v) x width x float32
    assert cache.match([1, 2], variant=("steered",))[0] == 0  # another forward pass: another root


def test_the_budget_holds_and_least_recently_used_leaves_go_first():
    per_token = 2 * 2 * 4 * 4
    cache = PrefixCache(10 * per_token)
    cache.insert([1, 2, 3, 4], kv_of([1, 2, 3, 4]))
    cache.insert([5, 6, 7, 8], kv_of([5, 6, 7, 8]))
    cache.match([1, 2, 3, 4])  # 1-2-3-4 is now the more recent
    cache.insert([9, 9, 9, 9], kv_of([9, 9, 9, 9]))  # no room for 12 tokens: 5-6-7-8 goes
    assert cache.match([5, 6])[0] == 0 and cache.match([1, 2, 3])[0] == 3 and cache.match([9, 9])[0] == 2
    cache.insert(list(range(20, 40)), kv_of(list(range(20, 40))))  # larger than the whole budget: not cached
    s = cache.stats()
    assert s["peak_bytes"] <= s["budget_bytes"] == 10 * per_token and s["bytes"] == 8 * per_token


@pytest.mark.parametrize("bad", [0, -5, "0", "-1GiB", "lots", "12 parsecs", "", True, "1e400"])
def test_a_bad_budget_is_one_clear_error(bad):
    with pytest.raises((InvalidInput, OverflowError)) as err:
        parse_budget(bad)
    if isinstance(err.value, InvalidInput):
        assert "budget" in str(err.value)


def test_budget_sizes():
    assert parse_budget("1GiB") == 2**30 and parse_budget("512MiB") == 2**29 and parse_budget("2e6") == 2_000_000
    assert parse_budget(4096) == 4096 and parse_budget(" 1.5 kb ") == 1500


def test_a_bad_budget_in_the_environment_fails_before_the_model_loads(monkeypatch):
    monkeypatch.setenv("LOOMWORK_KV_BUDGET", "-3")
    with pytest.raises(InvalidInput, match="budget"):
        HFBackend("no-such-model")


# -- the backend: cached equals uncached ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gemma():
    return build_tiny_gemma()


@pytest.fixture
def pair(gemma):
    lm, tok = gemma
    return (HFBackend("tiny-gemma", lm=lm, tokenizer=tok),
            HFBackend("tiny-gemma", lm=lm, tokenizer=tok, prefix_cache=False))


def same(a, b, tol=1e-5):
    assert [c.text for c in a.completions] == [c.text for c in b.completions]
    for x, y in zip(a.completions, b.completions):
        assert [t.id for t in x.tokens] == [t.id for t in y.tokens]
        assert max((abs(s.logprob - t.logprob) for s, t in zip(x.tokens, y.tokens)), default=0) < tol
        for s, t in zip(x.tokens, y.tokens):
            assert [p for p, _ in s.top] == [p for p, _ in t.top]


PATH = "the other one ran on; then the hunter sat there and the heron went off the river bank at last"


async def test_every_way_a_loom_reuses_a_prefix_gives_the_same_numbers(pair):
    cached, plain = pair
    p = SamplingParams(n=3, max_tokens=12, seed=4, temperature=1.2)
    assert len(cached.encode(PATH)) > 3 * 8  # well past the sliding window
    first = await cached.complete(PATH, p)
    same(first, await plain.complete(PATH, p))
    child = PATH + first.completions[0].text
    edited = PATH[:40] + " an edited thought"  # a copy-on-write sibling: shares only part of the prefix
    split = PATH[:57]  # a split node: the head's text is a prefix of what was cached
    human = child + " and then the heron spoke"  # a person's words after a model node
    for prefix in [child, PATH, edited, split, human, child]:  # PATH again: the warm re-branch
        same(await cached.complete(prefix, p), await plain.complete(prefix, p))
        x, y = await cached.next_token(prefix, k=8), await plain.next_token(prefix, k=8)
        assert [t for t, _ in x] == [t for t, _ in y] and [v for _, v in x] == pytest.approx([v for _, v in y], abs=1e-5)
        a, b = await cached.score(prefix, " the end"), await plain.score(prefix, " the end")
        assert [t.text for t in a] == [t.text for t in b]
        assert [t.logprob for t in a] == pytest.approx([t.logprob for t in b], abs=1e-5)
    s = cached.cache_stats()
    assert s["hits"] >= 12 and s["reused_tokens"] > s["computed_tokens"]
    assert plain.cache_stats() is None


async def test_background_scoring_fills_the_cache_and_agrees(pair):
    cached, plain = pair
    segments = [PATH[:30], PATH[30:61], " written by a person", PATH[61:]]
    a = await cached.score_segments(segments, [2, 3])
    b = await plain.score_segments(segments, [2, 3])
    for i in (2, 3):
        assert [t.text for t in a[i]] == [t.text for t in b[i]]
        assert [t.logprob for t in a[i]] == pytest.approx([t.logprob for t in b[i]], abs=1e-5)
    before = cached.cache_stats()["computed_tokens"]
    await cached.next_token("".join(segments), k=3)  # the generation that follows reads the path from the cache
    assert cached.cache_stats()["computed_tokens"] - before == 1
    again = await cached.score_segments(segments, [2, 3])  # scored again: only from the wanted segment on
    assert [t.logprob for t in again[3]] == pytest.approx([t.logprob for t in b[3]], abs=1e-5)


@pytest.mark.parametrize("prefix", [PATH, "ab"])  # past the window, and inside it
async def test_cached_logprobs_equal_a_plain_forward_pass(pair, prefix):
    """Not only equal to the uncached engine: equal to transformers' own forward pass with its default cache."""
    cached, _ = pair
    await cached.complete(prefix[:50], SamplingParams(n=1, max_tokens=4, seed=1))  # warm a part of the prefix
    done = await cached.complete(prefix, SamplingParams(n=2, max_tokens=16, seed=9))
    pre = cached.encode(prefix)
    for comp in done.completions:
        ids = [t.id for t in comp.tokens]
        with torch.no_grad():
            lp = torch.log_softmax(cached.lm(input_ids=torch.tensor([pre + ids])).logits[0].float(), -1)
        for pos, t in enumerate(comp.tokens):
            assert abs(t.logprob - float(lp[len(pre) - 1 + pos, t.id])) < 1e-5


async def test_a_nodes_logprobs_are_those_of_the_ids_the_model_produced(gemma):
    """The model reads a path as its text tokenises; a generated node keeps the logprobs of the ids it sampled.
    Where re-reading the text would tokenise it otherwise ("t" + "he" -> "the"), the stored numbers are still
    those of what the model saw, not of the re-tokenised text."""
    lm, tok = gemma
    backend = HFBackend("tiny-gemma", lm=lm, tokenizer=tok)
    found = 0
    for seed in range(40):
        done = await backend.complete(PATH, SamplingParams(n=4, max_tokens=24, seed=seed, temperature=1.5))
        pre = backend.encode(PATH)
        for comp in done.completions:
            ids = [t.id for t in comp.tokens]
            if not ids or backend.encode(PATH + comp.text)[len(pre):] == ids:
                continue
            found += 1
            with torch.no_grad():
                lp = torch.log_softmax(lm(input_ids=torch.tensor([pre + ids])).logits[0].float(), -1)
            assert [t.logprob for t in comp.tokens] == pytest.approx(
                [float(lp[len(pre) - 1 + i, t]) for i, t in enumerate(ids)], abs=1e-5)
        if found >= 3:
            break
    assert found >= 3, "no sample re-tokenised differently: the test proves nothing"


async def test_peak_memory_stays_within_a_small_budget(gemma):
    lm, tok = gemma
    per_token = 3 * 2 * 16 * 4  # layers x (k, v) x head dim x float32, one key/value head
    backend = HFBackend("tiny-gemma", lm=lm, tokenizer=tok, kv_budget=200 * per_token)
    for i in range(12):
        await backend.complete(f"{i} {PATH}", SamplingParams(n=2, max_tokens=6, seed=i))
    s = backend.cache_stats()
    assert 0 < s["bytes"] <= s["peak_bytes"] <= s["budget_bytes"] == 200 * per_token
    assert s["tokens"] * per_token == s["bytes"]
    assert s["peak_bytes"] > 200 * per_token - 2 * len(backend.encode(PATH)) * per_token  # it was used, and evicted


async def test_a_context_longer_than_the_window_is_refused_naming_both_numbers(pair):
    cached, _ = pair
    with pytest.raises(InvalidInput, match=r"longer than .*context window of 512 tokens"):
        await cached.complete("a" * 600, SamplingParams(n=1, max_tokens=4))
    with pytest.raises(InvalidInput, match="512"):
        await cached.complete("a" * 500, SamplingParams(n=1, max_tokens=40))


# -- the figures, from the API and the CLI -----------------------------------------------------------------------

async def test_the_cache_figures_from_the_api_and_the_cli(gemma, store, monkeypatch):
    import httpx
    from click.testing import CliRunner

    from loomwork.backends import registry
    from loomwork.cli import cli
    from loomwork.web import create_app

    lm, tok = gemma
    backend = HFBackend("tiny-gemma", lm=lm, tokenizer=tok)
    from loomwork.backends.pool import PROCESS

    monkeypatch.setattr(PROCESS._loaded, "models", {})  # only this test's model is loaded
    registry.register(backend)
    await backend.complete(PATH, SamplingParams(n=1, max_tokens=3, seed=0))
    await backend.complete(PATH, SamplingParams(n=1, max_tokens=3, seed=1))
    app = create_app(store, default_model="mock:default")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8765") as client:
        rows = (await client.get("/api/models/stats")).json()
    assert rows == [{"model": "hf:tiny-gemma", "cache": backend.cache_stats()}]
    assert rows[0]["cache"]["hits"] == 1 and rows[0]["cache"]["misses"] == 1
    # no server at the address: one clear line, exit code 1
    result = CliRunner().invoke(cli, ["models", "--stats", "--server", "http://127.0.0.1:9"])
    assert result.exit_code == 1 and "no loomwork server answered at http://127.0.0.1:9" in result.output


def test_models_stats_asks_a_running_server(tmp_path):
    import json

    from click.testing import CliRunner

    from loomwork.cli import cli
    from tests.servers import loomwork_server

    with loomwork_server(str(tmp_path / "s.sqlite")) as base:
        out = CliRunner().invoke(cli, ["models", "--stats", "--server", base, "--json"])
        assert out.exit_code == 0, out.output
        assert json.loads(out.stdout) == []  # nothing loaded yet: the mock model loads on first use
        out = CliRunner().invoke(cli, ["models", "--stats", "--server", base])
        assert "has loaded no model yet" in out.output


async def test_a_child_just_generated_is_warm(pair):
    """The samples' own states are kept: continuing from a new child computes only the join, not the child."""
    cached, plain = pair
    done = await cached.complete(PATH, SamplingParams(n=3, max_tokens=20, seed=2))
    pre, checked = cached.encode(PATH), 0
    for comp in done.completions:
        ids = [t.id for t in comp.tokens]
        if len(ids) < 5 or cached.encode(PATH + comp.text) != pre + ids:
            continue  # re-read, the join tokenises otherwise: the cache serves only up to it (tested above)
        checked += 1
        before = cached.cache_stats()["computed_tokens"]
        x = await cached.next_token(PATH + comp.text, k=5)
        assert cached.cache_stats()["computed_tokens"] - before <= 3
        y = await plain.next_token(PATH + comp.text, k=5)
        assert [t for t, _ in x] == [t for t, _ in y] and [v for _, v in x] == pytest.approx([v for _, v in y], abs=1e-5)
    assert checked


async def test_a_text_read_in_chunks_gives_the_one_pass_numbers(gemma, monkeypatch):
    """Long texts are fed in chunks (PREFILL_CHUNK): with chunks of 5 tokens (the path is ~30 tokens, the window
    8) scores spanning several chunks, the next-token view and samples equal one pass over the whole text."""
    from loomwork.engine import torch_engine as hf  # where the chunk size lives

    lm, tok = gemma
    one_pass = HFBackend("tiny-gemma", lm=lm, tokenizer=tok, prefix_cache=False)
    assert len(one_pass.encode(PATH)) < hf.PREFILL_CHUNK
    want_score = await one_pass.score(PATH[:20], PATH[20:])
    want_next = await one_pass.next_token(PATH, k=8)
    want_gen = await one_pass.complete(PATH, SamplingParams(n=2, max_tokens=6, seed=3))
    monkeypatch.setattr(hf, "PREFILL_CHUNK", 5)
    chunked = HFBackend("tiny-gemma", lm=lm, tokenizer=tok, prefix_cache=False)
    got = await chunked.score(PATH[:20], PATH[20:])
    assert len(got) > 10 and [t.text for t in got] == [t.text for t in want_score]
    assert [t.logprob for t in got] == pytest.approx([t.logprob for t in want_score], abs=1e-5)
    nxt = await chunked.next_token(PATH, k=8)
    assert [t for t, _ in nxt] == [t for t, _ in want_next]
    assert [v for _, v in nxt] == pytest.approx([v for _, v in want_next], abs=1e-5)
    same(await chunked.complete(PATH, SamplingParams(n=2, max_tokens=6, seed=3)), want_gen)


def test_a_generation_whose_reader_left_stops_between_chunks(gemma, monkeypatch):
    """Closing an expansion while its path is read: no more chunks are read and nothing is cached."""
    import threading

    from loomwork.engine import torch_engine as hf  # where the chunk size lives
    from loomwork.errors import Cancelled

    monkeypatch.setattr(hf, "PREFILL_CHUNK", 5)
    lm, tok = gemma
    engine = HFBackend("tiny-gemma", lm=lm, tokenizer=tok)
    left, calls = threading.Event(), []

    def reader_leaves(_module, _inputs):
        calls.append(1)
        left.set()  # the page goes away while the first chunk is read

    handle = lm.register_forward_pre_hook(reader_leaves)
    try:
        with pytest.raises(Cancelled):
            engine._model_thread.run(lambda: engine._generate(PATH, SamplingParams(n=2, max_tokens=4), lambda _e: None, left))
    finally:
        handle.remove()
    assert len(calls) == 1 and len(engine.encode(PATH)) > 3 * hf.PREFILL_CHUNK
    assert engine.cache_stats()["entries"] == 0
