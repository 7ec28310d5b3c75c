"""The OpenAI-compatible backend: failure handling against scripted responses, and the real thing against
llama-cpp-python's server running the packaged SmolLM2 model."""

from __future__ import annotations

import json
import math

import httpx
import pytest

from loomwork.backends import SamplingParams
from loomwork.backends.catalog import PACKAGED
from loomwork.backends.base import Done, TokenEvent
from loomwork.backends.openai import OpenAIBackend
from loomwork.errors import BackendError, InvalidInput
from tests.servers import free_port, llama_cpp_server


def _choice(text: str, index: int = 0) -> dict:
    toks = list(text)
    return {"index": index, "text": text, "finish_reason": "length",
            "logprobs": {"tokens": toks, "token_logprobs": [-0.5] * len(toks),
                         "top_logprobs": [{t: -0.5, "z": -2.0} for t in toks],
                         "text_offset": list(range(len(toks)))}}


def _backend(handler, kind: str = "llama-cpp-python") -> tuple[OpenAIBackend, list]:
    """A backend on a scripted server of a declared kind (so it asks /models for nothing)."""
    seen: list[httpx.Request] = []

    def record(request: httpx.Request):
        seen.append(request)
        return handler(request, len(seen))

    client = httpx.AsyncClient(transport=httpx.MockTransport(record))
    return OpenAIBackend(f"http://127.0.0.1:9/v1#m?server={kind}", client=client), seen


async def test_missing_choices_are_requested_one_each():
    # Like llama-cpp-python: n is ignored and one choice comes back per request.
    b, seen = _backend(lambda req, i: httpx.Response(200, json={"choices": [_choice(f"s{i}")],
                                                                "usage": {"prompt_tokens": 3, "completion_tokens": 2}}))
    done = await b.complete("p", SamplingParams(n=3, max_tokens=2, seed=10))
    assert sorted(c.text for c in done.completions) == ["s1", "s2", "s3"]
    bodies = [json.loads(r.content) for r in seen]
    assert bodies[0]["n"] == 3 and [x["n"] for x in bodies[1:]] == [1, 1]
    assert sorted(x["seed"] for x in bodies[1:]) == [11, 12]  # distinct seeds, or the extra samples would repeat
    assert done.completion_tokens == 6
    assert done.completions[0].tokens[0].top == (("s", -0.5), ("z", -2.0))


async def test_retries_on_429_and_503_then_succeeds():
    def handler(req, i):
        if i == 1:
            return httpx.Response(429, headers={"retry-after": "0"})
        if i == 2:
            return httpx.Response(503)
        return httpx.Response(200, json={"choices": [_choice("ok")]})

    b, seen = _backend(handler)
    done = await b.complete("p", SamplingParams(n=1, max_tokens=2))
    assert done.completions[0].text == "ok" and len(seen) == 3


async def test_server_errors_name_the_server():
    b, _ = _backend(lambda req, i: httpx.Response(500, text="model exploded"))
    with pytest.raises(BackendError, match=r"127\.0\.0\.1:9/v1 answered 500.*model exploded"):
        await b.complete("p", SamplingParams(n=1))
    b, seen = _backend(lambda req, i: httpx.Response(429))
    with pytest.raises(BackendError, match="answered 429"):
        await b.complete("p", SamplingParams(n=1))
    assert len(seen) == 5  # first try and four retries


async def test_connection_refused_is_one_clear_error():
    b = OpenAIBackend(f"http://127.0.0.1:{free_port()}/v1#m")
    with pytest.raises(BackendError, match="cannot reach the OpenAI-compatible server at http://127.0.0.1"):
        await b.complete("p", SamplingParams(n=1))
    await b.close()


def test_a_model_name_without_a_server_is_refused():
    with pytest.raises(InvalidInput, match="needs a server"):
        OpenAIBackend("my-model")


@pytest.fixture(scope="module")
def llama_server():
    pytest.importorskip("llama_cpp")
    gguf = PACKAGED["smollm2-135m-instruct"].gguf_path()
    with llama_cpp_server(str(gguf), "smollm2") as base:
        yield base


@pytest.mark.server
async def test_real_llama_cpp_server(llama_server):
    b = OpenAIBackend(f"{llama_server}#smollm2")
    try:
        events = [e async for e in b.stream("The capital of France is", SamplingParams(n=3, max_tokens=8, seed=1, logprobs=3))]
        done = events[-1]
        assert len(done.completions) == 3  # the server ignores n: the backend asked for the rest
        assert b.honours_n is False
        streamed = [e for e in events if isinstance(e, TokenEvent)]  # token by token, as the server sent them
        assert len(streamed) == sum(len(c.tokens) for c in done.completions) and len(streamed) > 3
        for c in done.completions:
            assert c.text and "".join(t.text for t in c.tokens) == c.text
            assert all(t.logprob is not None and math.isfinite(t.logprob) for t in c.tokens)
        scored = await b.score("The capital of France is", " Paris.")
        assert "".join(t.text for t in scored) == " Paris."
        assert all(t.logprob < 0 for t in scored)
        top = await b.next_token("The capital of France is", k=5)
        assert len(top) == 5 and top[0][1] >= top[-1][1]
        # served-model discovery when the reference names no model
        bare = OpenAIBackend(llama_server)
        assert (await bare.next_token("Hello", k=2))
        await bare.close()
    finally:
        await b.close()


# -- streaming ---------------------------------------------------------------------------------------------------

FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures" / "openai"


def _sse(chunks: list[dict], done: bool = True) -> bytes:
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + (b"data: [DONE]\n\n" if done else b"")


def _stream_choice(text: str, index: int = 0, finish: str | None = None) -> dict:
    return {"choices": [{**_choice(text, index), "finish_reason": finish}]}


async def test_a_vllm_stream_with_n_2_arrives_token_by_token():
    """vLLM's shape (fixtures/openai): the two samples' chunks interleaved, a logprobs object per chunk, usage in
    a last chunk without choices, then [DONE]."""
    body = (FIXTURES / "vllm_completions_stream_n2.sse").read_bytes()
    b, seen = _backend(lambda req, i: httpx.Response(200, content=body, headers={"content-type": "text/event-stream"}),
                       kind="vllm")
    events = [e async for e in b.stream("Once upon a time, there", SamplingParams(n=2, max_tokens=3, seed=1))]
    tokens = [e for e in events if isinstance(e, TokenEvent)]
    assert [(e.index, e.token.text) for e in tokens] == [(0, " The"), (1, " It"), (0, " sea"), (1, " rained"),
                                                         (0, " was"), (1, ".")]
    done = events[-1]
    assert isinstance(done, Done) and [c.text for c in done.completions] == [" The sea was", " It rained."]
    assert done.completions[1].tokens[1].logprob == -3.0
    assert done.completions[1].tokens[1].top == ((" was", -1.0), (" rained", -3.0))
    assert (done.prompt_tokens, done.completion_tokens) == (7, 6)
    assert len(seen) == 1 and json.loads(seen[0].content)["stream"] is True and b.honours_n is True
    sent = json.loads(seen[0].content)  # every sampler vLLM honours, neutral: not generation_config.json's
    assert (sent["top_k"], sent["min_p"], sent["repetition_penalty"]) == (-1, 0.0, 1.0)
    assert done.served["server"] == "vllm" and done.served["kind_from"] == "declared"


async def test_a_server_that_ignores_n_streams_the_rest_one_request_each():
    def handler(req, i):  # like llama-cpp-python: one choice, whatever n says
        body = json.loads(req.content)
        text = f"s{body.get('seed')}"
        return httpx.Response(200, content=_sse([_stream_choice(text[:1]), _stream_choice(text[1:], finish="length")]),
                              headers={"content-type": "text/event-stream"})

    b, seen = _backend(handler)
    done = await b.complete("p", SamplingParams(n=3, max_tokens=2, seed=10))
    assert [c.text for c in done.completions] == ["s10", "s11", "s12"]
    assert [json.loads(r.content)["n"] for r in seen] == [3, 1, 1] and b.honours_n is False
    seen.clear()
    done = await b.complete("p", SamplingParams(n=3, max_tokens=2, seed=20))  # now one request per sample at once
    assert [c.text for c in done.completions] == ["s20", "s21", "s22"]
    assert [json.loads(r.content)["n"] for r in seen] == [1, 1, 1]


class _Breaks(httpx.AsyncByteStream):
    """A response body that sends some chunks, then the connection drops (a server killed mid-stream)."""

    def __init__(self, first: bytes):
        self.first = first

    async def __aiter__(self):
        yield self.first
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")


async def test_a_server_killed_mid_stream_is_one_error_and_nothing_is_stored(store):
    from loomwork import ops

    b, _ = _backend(lambda req, i: httpx.Response(200, stream=_Breaks(_sse([_stream_choice("half")], done=False)),
                                                  headers={"content-type": "text/event-stream"}))
    _, root = ops.new_tree(store, "A prompt")
    got = []
    with pytest.raises(BackendError, match=r"stream from http://127\.0\.0\.1:9/v1 broke off.*nothing was kept"):
        async for item in ops.expand_stream(store, root.id, b, SamplingParams(n=2, max_tokens=4)):
            got.append(item)
    assert any(isinstance(e, TokenEvent) for e in got)  # the page saw "half" arrive...
    with store.read() as tx:
        assert tx.children(root.id) == []  # ...and the tree has nothing of it
    # a stream that just ends, unfinished and without [DONE], is refused the same way
    b, _ = _backend(lambda req, i: httpx.Response(200, content=_sse([_stream_choice("half")], done=False),
                                                  headers={"content-type": "text/event-stream"}))
    with pytest.raises(BackendError, match="ended the stream before sample 1 was finished"):
        await b.complete("p", SamplingParams(n=1, max_tokens=4))


@pytest.mark.server
async def test_the_real_server_killed_mid_stream(store):
    """llama-cpp-python's server killed while it streams: one clear error, nothing of the expansion stored."""
    import subprocess

    from loomwork import ops

    pytest.importorskip("llama_cpp")
    gguf = PACKAGED["smollm2-135m-instruct"].gguf_path()
    with llama_cpp_server(str(gguf), "smollm2") as base:
        port = base.split(":")[2].split("/")[0]
        b = OpenAIBackend(f"{base}#smollm2")
        _, root = ops.new_tree(store, "Once upon a time")
        seen = []
        try:
            with pytest.raises(BackendError, match="nothing was kept"):
                async for item in ops.expand_stream(store, root.id, b, SamplingParams(n=1, max_tokens=400, seed=1)):
                    seen.append(item)
                    if len(seen) == 3:  # a few tokens in, the server dies
                        subprocess.run(["pkill", "-9", "-f", f"llama_cpp.server.*--port {port}"], check=False)
        finally:
            await b.close()
    assert len(seen) >= 3
    with store.read() as tx:
        assert tx.children(root.id) == []


async def test_vllm_scores_with_prompt_logprobs_and_token_ids():
    """vLLM's shape (fixtures/openai/vllm_prompt_logprobs.json: a start token, then "Le café est" with "é" split
    into two byte tokens whose text is U+FFFD): one request, no echo; the continuation's tokens tile it exactly,
    the split character one record with its two logprobs summed."""
    fixture = json.loads((FIXTURES / "vllm_prompt_logprobs.json").read_text())
    b, seen = _backend(lambda req, i: httpx.Response(200, json=fixture), kind="vllm")
    toks = await b.score("Le", " café est", top=2)
    assert [t.text for t in toks] == [" caf", "é", " est"]
    assert [t.logprob for t in toks] == pytest.approx([-2.0, -0.11, -1.5])
    assert toks[0].top == ((" caf", -2.0), (" cha", -2.5))
    body = json.loads(seen[0].content)
    assert body["prompt_logprobs"] == 2 and body["return_token_ids"] is True and "echo" not in body
    broken = {"choices": [{"index": 0, "text": "", "prompt_logprobs": None}]}
    b, _ = _backend(lambda req, i: httpx.Response(200, json=broken), kind="vllm")
    with pytest.raises(BackendError, match="no prompt logprobs with token ids"):
        await b.score("Le", " café")
