"""Any OpenAI-compatible ``/v1/completions`` server: vLLM, llama-server, llama-cpp-python, ...

Model references: ``openai:MODEL`` (base URL from LOOMWORK_OPENAI_BASE_URL or OPENAI_BASE_URL) or
``openai:http://host:port/v1#MODEL`` (``#MODEL`` may be left out when the server serves one model).
The key comes from LOOMWORK_OPENAI_API_KEY or OPENAI_API_KEY.
"""

from __future__ import annotations

import asyncio
import os
import random
from typing import AsyncIterator

import httpx

from ..errors import BackendError, InvalidInput
from ..tree import Token
from .base import Backend, Capabilities, Completion, Done, SamplingParams, StopScanner, TokenEvent

RETRY_STATUS = {429, 503}
RETRIES = 4


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
    # Samples arrive when the server's whole response does (see stream), hence streaming=False.
    capabilities = Capabilities(streaming=False, logprobs=True, scoring=True, next_token=True)

    def __init__(self, model: str, *, client: httpx.AsyncClient | None = None, timeout: float = 120.0):
        super().__init__(model)
        self.base_url, self.model_name = parse_ref(model)
        key = os.environ.get("LOOMWORK_OPENAI_API_KEY") or os.environ.get("OPENAI_API_KEY") or "none"
        self.client = client or httpx.AsyncClient(timeout=timeout, headers={"Authorization": f"Bearer {key}"})

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
            try:
                resp = await self.client.request(method, url, json=body)
            except httpx.ConnectError:
                raise BackendError(f"cannot reach the OpenAI-compatible server at {self.base_url} "
                                   "(connection refused): is it running?") from None
            except httpx.TimeoutException:
                raise BackendError(f"the server at {self.base_url} did not answer in time") from None
            except httpx.HTTPError as exc:
                raise BackendError(f"request to {url} failed: {exc}") from None
            if resp.status_code in RETRY_STATUS and attempt < RETRIES:
                retry_after = resp.headers.get("retry-after", "")
                delay = float(retry_after) if retry_after.replace(".", "", 1).isdigit() else 0.25 * 2**attempt
                await asyncio.sleep(min(delay, 10.0) * (1 + 0.1 * random.random()))
                continue
            if resp.status_code >= 400:
                detail = resp.text[:300].strip()
                raise BackendError(f"the server at {self.base_url} answered {resp.status_code} to {path}: {detail}")
            try:
                return resp.json()
            except ValueError:
                raise BackendError(f"the server at {self.base_url} sent a response that is not JSON") from None
        raise AssertionError("unreachable")

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
        # Whole responses rather than SSE: servers differ in how they stream n > 1, and some ignore n, in which
        # case the missing samples are requested concurrently (each with its own derived seed).
        model = await self._served_model()
        first = await self._request("POST", "/completions", self._body(model, prefix, params, params.n, params.seed))
        choices = sorted(first.get("choices", []), key=lambda c: c.get("index", 0))[: params.n]
        usage = [first.get("usage") or {}]
        missing = params.n - len(choices)
        if missing > 0:
            base_seed = params.seed
            extra = await asyncio.gather(*(
                self._request("POST", "/completions", self._body(
                    model, prefix, params, 1, None if base_seed is None else base_seed + len(choices) + j))
                for j in range(missing)))
            for resp in extra:
                choices.extend(resp.get("choices", [])[:1])
                usage.append(resp.get("usage") or {})
        comps = []
        for i, choice in enumerate(choices):
            toks = _tokens(choice) or [Token(choice.get("text", ""))]
            scanner = StopScanner(params.stop)  # servers differ on whether stop text is included
            kept = [t for tok in toks for t in scanner.push(tok)] + scanner.flush()
            for t in kept:
                yield TokenEvent(i, t)
            reason = "stop" if scanner.stopped or choice.get("finish_reason") == "stop" else "length"
            comps.append(Completion("".join(t.text for t in kept), kept, reason))
        yield Done(comps, prompt_tokens=int(usage[0].get("prompt_tokens") or 0),
                   completion_tokens=sum(int(u.get("completion_tokens") or 0) for u in usage))

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

