"""Any OpenAI-compatible ``/v1/completions`` server: vLLM, llama-server, llama-cpp-python, ...

Model references: ``openai:MODEL`` (base URL from LOOMWORK_OPENAI_BASE_URL or OPENAI_BASE_URL) or
``openai:http://host:port/v1#MODEL`` (``#MODEL`` may be left out when the server serves one model), either with
``?server=vllm|llama-server|llama-cpp-python|other`` to name the server's kind instead of detecting it from
``/models``. Every request states every sampler field that kind honours (served.py); what was sent, and what of
the decoding lever cannot be known, is recorded with the generation. The key comes from LOOMWORK_OPENAI_API_KEY
or OPENAI_API_KEY.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
from typing import AsyncIterator, Callable

import httpx

from ..errors import BackendError, InvalidInput, Unsupported
from ..tree import Token
from . import served
from .base import Backend, Capabilities, Completion, Done, SamplingParams, StopScanner, TokenEvent
from .served_tokens import Sample, plain_tokens, tile

RETRY_STATUS = {429, 503}
RETRIES = 4


async def _backoff(resp: httpx.Response, attempt: int) -> None:
    """Wait before retrying a 429/503: the server's Retry-After if it gave one, else exponential (capped)."""
    retry_after = resp.headers.get("retry-after", "")
    delay = float(retry_after) if retry_after.replace(".", "", 1).isdigit() else 0.25 * 2**attempt
    await asyncio.sleep(min(delay, 10.0) * (1 + 0.1 * random.random()))


def parse_ref(model: str) -> tuple[str, str, str | None]:
    """``(base_url, model_name, server kind or None)`` from the part after ``openai:``."""
    model, _, query = model.partition("?")
    kind = None
    if query:
        key, _, value = query.partition("=")
        if key != "server" or value not in served.KINDS:
            raise InvalidInput(f"openai: {query[:100]!r}: the only option is ?server= one of {', '.join(served.KINDS)}")
        kind = value
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
    return base.rstrip("/"), name, kind


class OpenAIBackend(Backend):
    name = "openai"
    capabilities = Capabilities(streaming=True, logprobs=True, scoring=True, next_token=True)

    def __init__(self, model: str, *, client: httpx.AsyncClient | None = None, timeout: float = 120.0):
        super().__init__(model)
        self.base_url, self.model_name, self.kind = parse_ref(model)
        self.kind_from = "declared" if self.kind else None
        key = os.environ.get("LOOMWORK_OPENAI_API_KEY") or os.environ.get("OPENAI_API_KEY") or "none"
        self.client = client or httpx.AsyncClient(timeout=timeout, headers={"Authorization": f"Bearer {key}"})
        self.honours_n: bool | None = None  # learnt from the first request with n > 1 (llama-cpp-python ignores n)
        self.slots: int | None = None  # how many samples one request may ask for (llama-server's --parallel)
        self.ready = False  # name, kind and slots known

    async def close(self) -> None:
        await self.client.aclose()

    async def _served_model(self) -> str:
        """The model's name, and the server's kind (``self.kind``), from ``/models`` unless the reference gave both;
        a llama-server's slots once."""
        if self.ready:
            return self.model_name
        if not self.model_name or not self.kind:
            data = await self._request("GET", "/models")
            if not self.kind:
                self.kind, self.kind_from = served.kind_from_models(data), "detected"
            models = [m.get("id") for m in data.get("data", []) if isinstance(m, dict)]
            if not self.model_name:
                if not models:
                    raise BackendError(f"the server at {self.base_url} lists no models; name one with #MODEL")
                self.model_name = models[0]
        if self.kind == "llama-server":
            self.slots = await self._llama_server_slots()
        self.ready = True
        return self.model_name

    async def _llama_server_slots(self) -> int | None:
        """llama-server answers n only up to its slots (--parallel); /props, beside /v1, says how many."""
        root = self.base_url[:-3] if self.base_url.endswith("/v1") else self.base_url
        with contextlib.suppress(httpx.HTTPError, ValueError, TypeError):
            slots = int((await self.client.get(root + "/props")).json().get("total_slots") or 0)
            return slots if slots > 0 else None
        return None

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
        url = self.base_url + self.endpoint
        broke = lambda exc: f"the stream from {self.base_url} broke off: {exc or type(exc).__name__}; nothing was kept"  # noqa: E731
        for attempt in range(RETRIES + 1):
            with self._translated(broke):
                async with self.client.stream("POST", url, json={**body, "stream": True}) as resp:
                    if resp.status_code in RETRY_STATUS and attempt < RETRIES:
                        await _backoff(resp, attempt)
                        continue
                    if resp.status_code >= 400:
                        raise self._refused(resp.status_code, self.endpoint, (await resp.aread()).decode("utf-8", "replace"))
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
        """Put ("choice", sample, choice), ("finish", sample, reason) and ("usage", …) for one streamed request
        whose choices are samples ``first`` … ``first + count - 1``, then ("end", first, choices seen)."""
        seen: set[int] = set()
        try:
            async for chunk in self._chunks(body):
                for choice in chunk.get("choices") or []:
                    index = choice.get("index", 0)
                    if not 0 <= index < count:
                        continue
                    seen.add(index)
                    await out.put(("choice", first + index, self._as_completion(choice)))
                    if choice.get("finish_reason"):
                        await out.put(("finish", first + index, choice["finish_reason"]))
                if chunk.get("usage"):
                    await out.put(("usage", first, chunk["usage"]))
                verbose = chunk.get("__verbose")  # llama-server's account of the settings it applied
                if isinstance(verbose, dict) and isinstance(verbose.get("generation_settings"), dict):
                    await out.put(("settings", first, verbose["generation_settings"]))
        except Exception as exc:  # raised in the consumer (stream), which cancels the other requests
            await out.put(("error", first, exc))
            return False
        await out.put(("end", first, seen))
        return True

    endpoint = "/completions"

    def _as_completion(self, choice: dict) -> dict:
        """A choice as the completions API shapes it (a chat endpoint's subclass maps its deltas)."""
        return choice

    def _asked(self, params: SamplingParams) -> int:
        """Alternatives to ask for: the person's, or enough to recover truncation's KL from them."""
        return max(params.logprobs, served.TOP_FOR_KL if served.truncates(params) else 0)

    def _body(self, model: str, prefix: str, params: SamplingParams, n: int, seed: int | None) -> dict:
        body = {"model": model, "prompt": prefix, "n": n, "max_tokens": params.max_tokens,
                **served.sampler_fields(self.kind or "other", params), "logprobs": self._asked(params) or None}
        if seed is not None:
            body["seed"] = seed
        if params.stop:
            body["stop"] = list(params.stop)
        if self.kind == "llama-server":
            body["verbose"] = True  # its last chunk then says which settings it applied (checked, and recorded)
        return body

    def _served_record(self, params: SamplingParams, unknown: bool, got_logprobs: bool,
                       applied: dict | None = None) -> dict:
        """What the generation records of the server: its kind, the sampler fields sent (and those it says it
        applied, where it says), and why the decoding lever is not known where it is not."""
        kind = self.kind or "other"
        label = served.LABELS[kind]
        sent = served.sampler_fields(kind, params)
        why = None
        differs = served.differences(sent, applied) if applied else []
        if differs:
            unknown = True
            why = f"the {label} applied {'; '.join(differs)}, not what was sent"
        elif unknown:
            if kind == "other":
                why = served.UNKNOWN_KIND
            elif not got_logprobs:
                why = f"the {label} returned no logprobs, so what its sampling did cannot be measured"
            elif params.temperature not in (0.0, 1.0):
                why = (f"temperature {params.temperature:g} reshapes the whole distribution, and the {label} "
                       f"returns only its top {self._asked(params)} alternatives")
            else:
                why = (f"the truncation kept more than the top {self._asked(params)} alternatives the {label} "
                       "returned, so the mass it removed is not known")
        applied = {k: applied[k] for k in sent if k in applied} if applied else None
        return {"server": kind, "kind_from": self.kind_from or "assumed", "sent": sent,
                **({"applied": applied} if applied else {}),
                "decoding": "unknown" if unknown else "known", **({"why": why} if why else {})}

    async def stream(self, prefix: str, params: SamplingParams) -> AsyncIterator[TokenEvent | Done]:
        """Tokens as the server streams them. A server that ignores ``n`` (llama-cpp-python) sends one choice: the
        missing samples are then streamed one request each (with seeds seed + i, so they differ), and from then on
        every sample is its own request from the start. Those requests go one after another: such a server
        computes one request at a time anyway, and llama-cpp-python even cuts a stream short when another request
        arrives. A server with fewer slots than ``n`` (llama-server's --parallel) gets requests of at most that many,
        at once, each with its own seed. A stream that breaks off raises before ``Done``, so nothing of it is
        stored."""
        model = await self._served_model()
        n, seed = params.n, params.seed
        queue: asyncio.Queue = asyncio.Queue()
        tasks: list[asyncio.Task] = []
        asked: dict[int, int] = {}  # first sample of each request → how many samples it asked for

        def start(first: int, count: int, one_each: bool) -> int:
            """Start the requests for samples first … first + count - 1; how many requests there are."""
            if not one_each:
                per = min(count, self.slots or count)
                for g in range(first, first + count, per):
                    asked[g] = min(per, first + count - g)
                    body = self._body(model, prefix, params, asked[g], seed if seed is None or g == 0 else seed + g)
                    tasks.append(asyncio.create_task(self._choice_events(body, g, asked[g], queue)))
                return len(range(first, first + count, per))

            async def one_by_one() -> None:
                for i in range(first, first + count):
                    body = self._body(model, prefix, params, 1, None if seed is None else seed + i)
                    if not await self._choice_events(body, i, 1, queue):
                        return

            tasks.append(asyncio.create_task(one_by_one()))
            return count

        running = start(0, n, one_each=n > 1 and self.honours_n is False)  # requests still to end
        samples = [Sample(self.kind or "other", params, self._asked(params)) for _ in range(n)]
        scanners = [StopScanner(params.stop) for _ in range(n)]
        comps = [Completion(text="") for _ in range(n)]
        finished: set[int] = set()
        usage: list[dict] = []
        settings: dict = {}  # what the server says it applied (llama-server, asked to be verbose)
        try:
            while running:
                kind, index, value = await queue.get()
                if kind == "error":
                    raise value
                if kind == "choice" and index not in finished:
                    for tok in samples[index].push(value):
                        for t in scanners[index].push(tok):
                            comps[index].tokens.append(t)
                            yield TokenEvent(index, t)
                    if scanners[index].stopped:
                        finished.add(index)  # servers differ on whether they stop at our stop strings
                        comps[index].finish_reason = "stop"
                        comps[index].stopped_by = scanners[index].stopped_by
                elif kind == "finish":
                    finished.add(index)
                    comps[index].finish_reason = "stop" if value == "stop" or scanners[index].stopped else "length"
                elif kind == "usage":
                    usage.append(value)
                elif kind == "settings":
                    settings.setdefault("applied", value)
                elif kind == "end":
                    running -= 1
                    if index == 0 and n > 1 and self.honours_n is not False and len(value) < asked[0]:
                        self.honours_n = False  # it ignored n: ask for the rest, one request each
                        running += start(len(value), n - len(value), one_each=True)
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
            rest = [] if sc.stopped else [t for tok in samples[i].flush() for t in sc.push(tok)]
            for t in rest + sc.flush():
                comps[i].tokens.append(t)
                yield TokenEvent(i, t)
            comps[i].text = "".join(t.text for t in comps[i].tokens)
        got = any(t.logprob is not None for c in comps for t in c.tokens)
        record = self._served_record(params, any(s.unknown for s in samples), got, settings.get("applied"))
        yield Done(comps, prompt_tokens=int((usage[0] if usage else {}).get("prompt_tokens") or 0),
                   completion_tokens=sum(int(u.get("completion_tokens") or 0) for u in usage)
                   or sum(len(c.tokens) for c in comps), served=record)

    async def score(self, prefix: str, continuation: str, top: int = 5) -> list[Token]:
        model = await self._served_model()
        if self.kind == "llama-server":
            raise Unsupported(f"{self.ref}: llama-server does not return a prompt's logprobs (it refuses echo), so "
                              "written text cannot be scored on it: serve the model with vLLM or llama-cpp-python, "
                              "or load its GGUF in-process as llama:FILE")
        if self.kind == "vllm":
            return await self._score_vllm(model, prefix, continuation, top)
        body = {"model": model, "prompt": prefix + continuation, "max_tokens": 1, "temperature": 0,
                "echo": True, "logprobs": max(top, 1)}
        data = await self._request("POST", "/completions", body)
        choice = data["choices"][0]
        offsets = (choice.get("logprobs") or {}).get("text_offset")
        toks = plain_tokens(choice)
        if not toks or not offsets:
            raise BackendError(f"the server at {self.base_url} did not echo prompt logprobs (needed for scoring)")
        out = [t for t, off in zip(toks, offsets) if off >= len(prefix) and off < len(prefix) + len(continuation)]
        return [Token(t.text, t.logprob, t.top[:top]) for t in out]

    async def _score_vllm(self, model: str, prefix: str, continuation: str, top: int) -> list[Token]:
        """vLLM's ``prompt_logprobs`` with the prompt's token ids (``return_token_ids``): each prompt token's
        logprob and its top alternatives in one pass, the token known by its id, not by a text that may hold part
        of a character. The tokens' texts are tiled against the text itself (tokens holding part of a character
        merged into one record), then those of the continuation kept, as the echo path does."""
        full = prefix + continuation
        body = {"model": model, "prompt": full, "max_tokens": 1, "temperature": 0,
                "prompt_logprobs": max(top, 1), "return_token_ids": True}
        choice = (await self._request("POST", "/completions", body)).get("choices", [{}])[0]
        ids, rows = choice.get("prompt_token_ids"), choice.get("prompt_logprobs")
        if not isinstance(ids, list) or not isinstance(rows, list) or len(ids) != len(rows) or not ids:
            raise BackendError(f"the server at {self.base_url} returned no prompt logprobs with token ids "
                               "(vLLM 0.10.2 or later gives both)")
        held = []
        for tid, row in zip(ids, rows):
            if row is None:  # the first token has no logprob (a start token, or the text's first token)
                continue
            entry = row.get(str(tid)) or {}
            alts = sorted(((str(v.get("decoded_token", "")), float(v["logprob"])) for k, v in row.items()
                           if k != str(tid) or v.get("rank", top + 1) <= top), key=lambda x: -x[1])
            held.append((tid, None if entry.get("logprob") is None else float(entry["logprob"]), tuple(alts[:top]),
                         None, str(entry.get("decoded_token") or "")[::-1]))
        # tiled from the end of the text (reversed), where the scored tokens end whether or not a start token came
        # first; a token holding part of a character is merged with its neighbours into whole characters
        toks = [Token(t.text[::-1], t.logprob, t.top) for t in tile(held[::-1], full[::-1])][::-1]
        offsets, at = [], len(full) - sum(len(t.text) for t in toks)
        for t in toks:
            offsets.append(at)
            at += len(t.text)
        out = [t for t, off in zip(toks, offsets) if len(prefix) <= off < len(full)]
        return [Token(t.text, t.logprob, t.top[:top]) for t in out]

    async def next_token(self, prefix: str, k: int = 20) -> list[tuple[str, float]]:
        model = await self._served_model()
        body = {"model": model, "prompt": prefix, "max_tokens": 1, "temperature": 0, "logprobs": k}
        data = await self._request("POST", "/completions", body)
        toks = plain_tokens(data["choices"][0])
        if not toks:
            raise BackendError(f"the server at {self.base_url} returned no logprobs")
        return list(toks[0].top[:k])

