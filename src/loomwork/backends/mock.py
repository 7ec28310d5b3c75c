"""A deterministic toy language model, shipped for tests and demos.

It is a real (if silly) language model, not a canned answer: the next-token distribution is a fixed function of
the last characters of the text, so sampling, scoring and next-token queries all agree with one another, and a
seed reproduces the same samples. ``mock:slow`` waits between tokens, to watch streaming and cancelling.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import string
from functools import lru_cache
from typing import AsyncIterator

from ..tree import Token
from .base import Backend, Capabilities, Completion, Done, SamplingParams, StopScanner, TokenEvent
from .sampling import log_softmax, sample_index

_WORDS = (
    "the a of and to in is was it that he she they we you I his her their loom thread weave pattern story "
    "river light stone night morning voice dream door window garden house sea wind fire old new quiet bright "
    "dark long small strange said saw knew began turned walked looked found heard remembered wanted could would "
    "again there then when where because while under over through into from with without before after"
).split()
EOS = ""  # index 0: ends the sample
VOCAB: tuple[str, ...] = tuple(dict.fromkeys((EOS, *(" " + w for w in _WORDS), ".", ",", "!", "?", ";", "\n", "\n\n",
                                               *(c for c in string.printable if c not in "\t\r\x0b\x0c"))))
_BIAS = [(-1.5 if t == EOS else 2.0 if t.startswith(" ") and len(t) > 1 else 0.5 if t in ".,\n" else -3.0)
         for t in VOCAB]
_CONTEXT_CHARS = 12
_UNK_LOGPROB = math.log(1e-6)  # a character the toy vocabulary lacks


@lru_cache(maxsize=65536)
def _logprobs(context: str) -> tuple[float, ...]:
    """Next-token log-probabilities after text ending in ``context``."""
    seed = int.from_bytes(hashlib.blake2b(context.encode(), digest_size=8).digest(), "big")
    rng = random.Random(seed)
    return tuple(log_softmax([b + rng.gauss(0.0, 1.5) for b in _BIAS]))


def _tail(text: str) -> str:
    return text[-_CONTEXT_CHARS:]


def tokenize(text: str) -> list[str]:
    """Greedy longest match over the vocabulary; characters outside it become one-character tokens."""
    out, i = [], 0
    longest = max(len(t) for t in VOCAB)
    vocab = set(VOCAB[1:])
    while i < len(text):
        for size in range(min(longest, len(text) - i), 0, -1):
            if text[i : i + size] in vocab or size == 1:
                out.append(text[i : i + size])
                i += size
                break
    return out


_INDEX = {t: i for i, t in enumerate(VOCAB)}


def _top(lps: tuple[float, ...], k: int) -> tuple[tuple[str, float], ...]:
    best = sorted(range(len(lps)), key=lambda i: -lps[i])[:k]
    return tuple((VOCAB[i], lps[i]) for i in best)


class MockBackend(Backend):
    name = "mock"
    capabilities = Capabilities(streaming=True, logprobs=True, scoring=True, next_token=True)

    def __init__(self, model: str = "default"):
        if model not in ("default", "slow"):
            raise ValueError(model)
        super().__init__(model)
        self.delay = 0.05 if model == "slow" else 0.0

    async def stream(self, prefix: str, params: SamplingParams) -> AsyncIterator[TokenEvent | Done]:
        seed = params.seed if params.seed is not None else random.randrange(2**31)
        rngs = [random.Random(f"{seed}:{i}") for i in range(params.n)]
        texts = [prefix] * params.n
        scanners = [StopScanner(params.stop) for _ in range(params.n)]
        comps = [Completion(text="") for _ in range(params.n)]
        live = set(range(params.n))
        used = 0
        for _step in range(params.max_tokens):
            if not live:
                break
            if self.delay:
                await asyncio.sleep(self.delay)
            for i in sorted(live):
                lps = _logprobs(_tail(texts[i]))
                j = sample_index(lps, params, rngs[i])
                used += 1
                if j == 0:
                    comps[i].finish_reason, comps[i].stopped_by = "stop", "<end of text>"
                    live.discard(i)
                    continue
                tok = Token(VOCAB[j], lps[j], _top(lps, params.logprobs), id=j)
                texts[i] += tok.text
                for t in scanners[i].push(tok):
                    comps[i].tokens.append(t)
                    yield TokenEvent(i, t)
                if scanners[i].stopped:
                    comps[i].finish_reason, comps[i].stopped_by = "stop", scanners[i].stopped_by
                    live.discard(i)
            await asyncio.sleep(0)  # let a cancel or other requests in between steps
        for i, sc in enumerate(scanners):
            for t in sc.flush():
                comps[i].tokens.append(t)
                yield TokenEvent(i, t)
            comps[i].text = "".join(t.text for t in comps[i].tokens)
        yield Done(comps, prompt_tokens=len(tokenize(prefix)), completion_tokens=used)

    async def score(self, prefix: str, continuation: str, top: int = 5) -> list[Token]:
        out, text = [], prefix
        for piece in tokenize(continuation):
            lps = _logprobs(_tail(text))
            j = _INDEX.get(piece)
            out.append(Token(piece, lps[j] if j is not None else _UNK_LOGPROB, _top(lps, top), id=j))
            text += piece
        return out

    async def score_many(self, prefix: str, continuations: list[str], eos: bool = False) -> list[float]:
        out = []
        for c in continuations:
            total = sum(t.logprob for t in await self.score(prefix, c, top=0))
            out.append(total + (_logprobs(_tail(prefix + c))[0] if eos else 0.0))
        return out

    async def next_token(self, prefix: str, k: int = 20) -> list[tuple[str, float]]:
        return list(_top(_logprobs(_tail(prefix)), k))

    async def entropy(self, prefix: str) -> float | None:
        return -sum(math.exp(lp) * lp for lp in _logprobs(_tail(prefix))) / math.log(2)
