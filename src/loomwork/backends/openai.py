"""Any OpenAI-compatible ``/v1/completions`` server: vLLM, llama-server, llama-cpp-python, ...

Model references: ``openai:MODEL`` (base URL from LOOMWORK_OPENAI_BASE_URL or OPENAI_BASE_URL) or
``openai:http://host:port/v1#MODEL`` (``#MODEL`` may be left out when the server serves one model).
The key comes from LOOMWORK_OPENAI_API_KEY or OPENAI_API_KEY.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
from typing import AsyncIterator, Callable

import httpx

from ..errors import BackendError, InvalidInput
from ..tree import Token
from .base import Backend, Capabilities, Completion, Done, SamplingParams, StopScanner, TokenEvent

RETRY_STATUS = {429, 503}
RETRIES = 4


async def _backoff(resp: httpx.Response, attempt: int) -> None:
    """Wait before retrying a 429/503: the server's Retry-After if it gave one, else exponential (capped)."""
    retry_after = resp.headers.get("retry-after", "")
    delay = float(retry_after) if retry_after.replace(".", "", 1).isdigit() else 0.25 * 2**attempt
    await asyncio.sleep(min(delay, 10.0) * (1 + 0.1 * random.random()))


def parse_ref(model: str) -> tuple[str, str]:
    """``(base_url, model_name)`` from the part after ``openai:``."""
    if model.startswith(("http://", "https://")):
        base, _, name = model.partition("#")
    else:
        base = os.environ.get("LOOMWORK_OPENAI_BASE_URL") or os.environ.get("OPENAI_BASE_URL") or ""
        name = model
        if not base:
            raise InvalidInput(f"openai:{model} needs a server: write openai:http://HOST:PORT/v1#{model} "
                               "or set LOOMWORK_OPENAI_BASE_URL")
    try:  # one clear error for a malformed address, here rather than as a traceback at the first request
        url = httpx.URL(base)
        if not url.host or not 0 < (url.port or 80) < 65536:
            raise ValueError("no host, or a port outside 1-65535")
    except (ValueError, TypeError, httpx.InvalidURL) as exc:
        raise InvalidInput(f"openai: {base[:200]!r} is not a server address ({exc})") from None
    return base.rstrip("/"), name


def _tokens(choice: dict) -> list[Token]:
    """Token records from a completions choice's legacy ``logprobs`` object."""
    lp = choice.get("logprobs") or {}
    toks = lp.get("tokens") or []
    lps = lp.get("token_logprobs") or [None] * len(toks)
    tops = lp.get("top_logprobs") or [None] * len(toks)
    out = []
    for text, logprob, top in zip(toks, lps, tops):
        alts = tuple(sorted(((str(a), float(b)) for a, b in (top or {}).items()), key=lambda x: -x[1]))
        out.append(Token(text, None if logprob is None else float(logprob), alts))
    return out


class OpenAIBackend(Backend):
    name = "openai"
    capabilities = Capabilities(streaming=True, logprobs=True, scoring=True, next_token=True)

    def __init__(self, model: str, *, client: httpx.AsyncClient | None = None, timeout: float = 120.0):
        super().__init__(model)
        self.base_url, self.model_name = parse_ref(model)
        key = os.environ.get("LOOMWORK_OPENAI_API_KEY") or os.environ.get("OPENAI_API_KEY") or "none"
        self.client = client or httpx.AsyncClient(timeout=timeout, headers={"Authorization": f"Bearer {key}"})
        self.honours_n: bool | None = None  # learnt from the first request with n > 1 (llama-cpp-python ignores n)

    async def close(self) -> None:
        await self.client.aclose()

    async def _served_model(self) -> str:
        if not self.model_name:
            data = await self._request("GET", "/models")
            models = [m.get("id") for m in data.get("data", [])]
            if not models:
                raise BackendError(f"the server at {self.base_url} lists no models; name one with #MODEL")
            self.model_name = models[0]
        return self.model_name

    async def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        url = self.base_url + path
        for attempt in range(RETRIES + 1):
            with self._translated(lambda exc: f"request to {url} failed: {exc}"):
                resp = await self.client.request(method, url, json=body)
            if resp.status_code in RETRY_STATUS and attempt < RETRIES:
                await _backoff(resp, attempt)
                continue
            if resp.status_code >= 400:
                raise self._refused(resp.status_code, path, resp.text)
            try:
                return resp.json()
            except ValueError:
                raise BackendError(f"the server at {self.base_url} sent a response that is not JSON") from None
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def _translated(self, other: Callable[[Exception], str]):
        """httpx's failures as one BackendError naming the server; ``other`` words the ones not named here."""
        try:
            yield
        except httpx.ConnectError:
            raise BackendError(f"cannot reach the OpenAI-compatible server at {self.base_url} "
                               "(connection refused): is it running?") from None
        except httpx.TimeoutException:
            raise BackendError(f"the server at {self.base_url} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise BackendError(other(exc)) from None

    def _refused(self, status: int, path: str, text: str) -> BackendError:
        return BackendError(f"the server at {self.base_url} answered {status} to {path}: {text[:300].strip()}")

    async def _chunks(self, body: dict) -> AsyncIterator[dict]:
        """The chunks of one streamed completion (server-sent events, ``data: {...}`` until ``data: [DONE]``).
        429/503 before the stream starts are retried; a stream that breaks off is one BackendError."""
        url = self.base_url + "/completions"
        broke = lambda exc: f"the stream from {self.base_url} broke off: {exc or type(exc).__name__}; nothing was kept"  # noqa: E731
        for attempt in range(RETRIES + 1):
            with self._translated(broke):
                async with self.client.stream("POST", url, json={**body, "stream": True}) as resp:
                    if resp.status_code in RETRY_STATUS and attempt < RETRIES:
                        await _backoff(resp, attempt)
                        continue
                    if resp.status_code >= 400:
                        raise self._refused(resp.status_code, "/completions", (await resp.aread()).decode("utf-8", "replace"))
                    if resp.headers.get("content-type", "").startswith("application/json"):
                        try:  # a server that does not stream answers with the whole response: one chunk
                            yield json.loads(await resp.aread())
                        except ValueError:
                            raise BackendError(f"the server at {self.base_url} sent a response that is not JSON") from None
                        return
                    async for line in resp.aiter_lines():
                        if not line.startswith("data:"):
                            continue  # comments, event names, keep-alives
                        data = line[5:].strip()
                        if data == "[DONE]":
                            return
                        try:
                            chunk = json.loads(data)
                        except ValueError:
                            raise BackendError(f"the server at {self.base_url} streamed something that is not JSON") from None
                        if "error" in chunk:
                            raise BackendError(f"the server at {self.base_url} stopped with an error: {chunk['error']}")
                        yield chunk
                    return

    async def _choice_events(self, body: dict, first: int, count: int, out: asyncio.Queue) -> bool:
        """Put ("token", sample, Token), ("finish", sample, reason) and ("usage", …) for one streamed request whose
        choices are samples ``first`` … ``first + count - 1``, then ("end", first, choices seen)."""
        seen: set[int] = set()
        try:
            async for chunk in self._chunks(body):
                for choice in chunk.get("choices") or []:
                    index = choice.get("index", 0)
                    if not 0 <= index < count:
                        continue
                    seen.add(index)
                    for tok in _tokens(choice) or ([Token(choice["text"])] if choice.get("text") else []):
                        await out.put(("token", first + index, tok))
                    if choice.get("finish_reason"):
                        await out.put(("finish", first + index, choice["finish_reason"]))
                if chunk.get("usage"):
                    await out.put(("usage", first, chunk["usage"]))
        except Exception as exc:  # raised in the consumer (stream), which cancels the other requests
            await out.put(("error", first, exc))
            return False
        await out.put(("end", first, seen))
        return True

    def _body(self, model: str, prefix: str, params: SamplingParams, n: int, seed: int | None) -> dict:
        body = {
            "model": model, "prompt": prefix, "n": n, "max_tokens": params.max_tokens,
            "temperature": params.temperature, "top_p": params.top_p, "logprobs": params.logprobs or None,
        }
        if params.top_k:
            body["top_k"] = params.top_k  # vLLM and llama.cpp accept these extensions
        if params.min_p:
            body["min_p"] = params.min_p
        if seed is not None:
            body["seed"] = seed
        if params.stop:
            body["stop"] = list(params.stop)
        return body

    async def stream(self, prefix: str, params: SamplingParams) -> AsyncIterator[TokenEvent | Done]:
        """Tokens as the server streams them. A server that ignores ``n`` (llama-cpp-python) sends one choice: the
        missing samples are then streamed one request each (with seeds seed + i, so they differ), and from then on
        every sample is its own request from the start. Those requests go one after another: such a server
        computes one request at a time anyway, and llama-cpp-python even cuts a stream short when another request
        arrives. A stream that breaks off raises before ``Done``, so nothing of it is stored."""
        model = await self._served_model()
        n, seed = params.n, params.seed
        queue: asyncio.Queue = asyncio.Queue()
        tasks: list[asyncio.Task] = []

        def start(first: int, count: int, one_each: bool) -> None:
            if not one_each:
                body = self._body(model, prefix, params, count, seed)
                tasks.append(asyncio.create_task(self._choice_events(body, first, count, queue)))
                return

            async def one_by_one() -> None:
                for i in range(first, first + count):
                    body = self._body(model, prefix, params, 1, None if seed is None else seed + i)
                    if not await self._choice_events(body, i, 1, queue):
                        return

            tasks.append(asyncio.create_task(one_by_one()))

        start(0, n, one_each=n > 1 and self.honours_n is False)
        scanners = [StopScanner(params.stop) for _ in range(n)]
        comps = [Completion(text="") for _ in range(n)]
        finished: set[int] = set()
        usage: list[dict] = []
        running = 1 if n == 1 or self.honours_n is not False else n  # requests still to end
        try:
            while running:
                kind, index, value = await queue.get()
                if kind == "error":
                    raise value
                if kind == "token" and index not in finished:
                    for t in scanners[index].push(value):
                        comps[index].tokens.append(t)
                        yield TokenEvent(index, t)
                    if scanners[index].stopped:
                        finished.add(index)  # servers differ on whether they stop at our stop strings
                        comps[index].finish_reason = "stop"
                elif kind == "finish":
                    finished.add(index)
                    comps[index].finish_reason = "stop" if value == "stop" or scanners[index].stopped else "length"
                elif kind == "usage":
                    usage.append(value)
                elif kind == "end":
                    running -= 1
                    if index == 0 and n > 1 and self.honours_n is not False and len(value) < n:
                        self.honours_n = False  # it ignored n: ask for the rest, one request each
                        start(len(value), n - len(value), one_each=True)
                        running += n - len(value)
                    elif index == 0 and n > 1 and self.honours_n is None:
                        self.honours_n = True
            missing = [i for i in range(n) if i not in finished]
            if missing:
                raise BackendError(f"the server at {self.base_url} ended the stream before sample {missing[0] + 1} "
                                   "was finished; nothing was kept")
        finally:
            for t in tasks:
                t.cancel()
        for i, sc in enumerate(scanners):
            for t in sc.flush():
                comps[i].tokens.append(t)
                yield TokenEvent(i, t)
            comps[i].text = "".join(t.text for t in comps[i].tokens)
        yield Done(comps, prompt_tokens=int((usage[0] if usage else {}).get("prompt_tokens") or 0),
                   completion_tokens=sum(int(u.get("completion_tokens") or 0) for u in usage)
                   or sum(len(c.tokens) for c in comps))

    async def score(self, prefix: str, continuation: str, top: int = 5) -> list[Token]:
        model = await self._served_model()
        body = {"model": model, "prompt": prefix + continuation, "max_tokens": 1, "temperature": 0,
                "echo": True, "logprobs": max(top, 1)}
        data = await self._request("POST", "/completions", body)
        choice = data["choices"][0]
        offsets = (choice.get("logprobs") or {}).get("text_offset")
        toks = _tokens(choice)
        if not toks or not offsets:
            raise BackendError(f"the server at {self.base_url} did not echo prompt logprobs (needed for scoring)")
        out = [t for t, off in zip(toks, offsets) if off >= len(prefix) and off < len(prefix) + len(continuation)]
        return [Token(t.text, t.logprob, t.top[:top]) for t in out]

    async def next_token(self, prefix: str, k: int = 20) -> list[tuple[str, float]]:
        model = await self._served_model()
        body = {"model": model, "prompt": prefix, "max_tokens": 1, "temperature": 0, "logprobs": k}
        data = await self._request("POST", "/completions", body)
        toks = _tokens(data["choices"][0])
        if not toks:
            raise BackendError(f"the server at {self.base_url} returned no logprobs")
        return list(toks[0].top[:k])

