"""The OpenAI-compatible backend: failure handling against scripted responses, and the real thing against
llama-cpp-python's server running the packaged SmolLM2 model."""

from __future__ import annotations

import json
import math

import httpx
import pytest

from loomwork.backends import SamplingParams
from loomwork.backends.catalog import PACKAGED
from loomwork.backends.openai import OpenAIBackend
from loomwork.errors import BackendError, InvalidInput
from tests.servers import free_port, llama_cpp_server


def _choice(text: str, index: int = 0) -> dict:
    toks = list(text)
    return {"index": index, "text": text, "finish_reason": "length",
            "logprobs": {"tokens": toks, "token_logprobs": [-0.5] * len(toks),
                         "top_logprobs": [{t: -0.5, "z": -2.0} for t in toks],
                         "text_offset": list(range(len(toks)))}}


def _backend(handler) -> tuple[OpenAIBackend, list]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request):
        seen.append(request)
        return handler(request, len(seen))

    client = httpx.AsyncClient(transport=httpx.MockTransport(record))
    return OpenAIBackend("http://127.0.0.1:9/v1#m", client=client), seen


async def test_missing_choices_are_requested_concurrently():
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
        done = await b.complete("The capital of France is", SamplingParams(n=3, max_tokens=8, seed=1, logprobs=3))
        assert len(done.completions) == 3  # the server ignores n: the backend asked for the rest
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
