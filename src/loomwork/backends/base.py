"""The one async contract every model backend implements.

Parameter names follow the OpenAI/vLLM completions API so that a remote server and a local model take the same
settings. Logprobs are always the model's raw log-probabilities (natural log, before temperature and truncation):
that is what teacher-forced scoring of the same text returns, and what the optimization accounting needs.
"""

from __future__ import annotations

import abc
import random
import threading
from dataclasses import dataclass, field, replace
from typing import AsyncIterator, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import Cancelled, InvalidInput, Unsupported
from ..levers.steering import Steer
from ..tree import LEDGER_FIELDS, Token

MAX_N = 64


class SamplingParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int = Field(4, ge=1, le=MAX_N)
    max_tokens: int = Field(32, ge=1, le=8192)  # as the page and the CLI
    temperature: float = Field(1.0, ge=0.0, le=10.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0)  # 0 = no top-k truncation
    min_p: float = Field(0.0, ge=0.0, le=1.0)
    seed: int | None = Field(None, ge=0, lt=2**63)
    stop: tuple[str, ...] = ()
    logprobs: int = Field(5, ge=0, le=20)  # how many alternatives to record per token
    # activation steering (backends with the "steering" capability): vectors added at the positions that predict
    # new tokens (the prompt's last and every generated one), or at every position of the prompt too
    steer: tuple[Steer, ...] = ()
    steer_prompt: bool = False
    # chat models (capability "chat"): the system message before the assistant message the path continues
    system: str = Field("", max_length=20_000)

    @field_validator("steer", mode="before")
    @classmethod
    def _steer_list(cls, v):
        if v is None:
            return ()
        items = [v] if isinstance(v, (str, dict)) else list(v)
        if len(items) > 8:
            raise ValueError("at most 8 steering vectors at once")
        out = tuple(Steer.parse(x) for x in items)
        if len({x.name for x in out}) != len(out):
            raise ValueError("a steering vector is named twice")
        return out

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, v):
        if v is None:
            return ()
        if isinstance(v, str):
            v = (v,)
        v = tuple(v)
        if len(v) > 16 or any(not isinstance(s, str) or not 0 < len(s) <= 200 for s in v):
            raise ValueError("stop sequences must be at most 16 strings of 1 to 200 characters")
        for s in v:
            if "\x00" in s or any("\ud800" <= ch <= "\udfff" for ch in s):
                raise ValueError("stop sequences must be valid Unicode without NUL")
        return v

    @classmethod
    def make(cls, **kwargs) -> "SamplingParams":
        """Build from user input; one clear InvalidInput for everything wrong, naming each field."""
        try:
            return cls(**{k: v for k, v in kwargs.items() if v is not None})
        except ValidationError as exc:
            parts = []
            for err in exc.errors():
                name = ".".join(str(p) for p in err["loc"]) or "params"
                msg = err["msg"]
                if err["type"] == "extra_forbidden":
                    msg = f"unknown sampling parameter (known: {', '.join(cls.model_fields)})"
                parts.append(f"{name}: {msg}")
            raise InvalidInput("invalid sampling parameters: " + "; ".join(parts)) from None

    def with_seed(self) -> "SamplingParams":
        """A copy with a concrete seed, so that every generation can be reproduced from its record."""
        return self if self.seed is not None else self.model_copy(update={"seed": random.randrange(2**31)})


@dataclass(frozen=True)
class Capabilities:
    streaming: bool = True
    logprobs: bool = True
    scoring: bool = True  # logprob of each token of a given continuation
    next_token: bool = True  # full next-token distribution at a prefix
    steering: bool = False  # activation steering vectors (SamplingParams.steer)
    batched_sweep: bool = False  # a steering sweep's coefficients in one batch (stream_sweep)
    distributions: bool = False  # whole next-token distributions over a vocabulary (kl_per_position)
    chat: bool = False  # a chat endpoint: the path is the assistant's message, continued (SamplingParams.system)


@dataclass
class TokenEvent:
    """One new token of sample ``index`` (streamed)."""

    index: int
    token: Token


@dataclass
class Completion:
    text: str
    tokens: list[Token] = field(default_factory=list)
    finish_reason: str = "length"  # "length" | "stop" (stop sequence or end of text)
    stopped_by: str | None = None  # the stop sequence that ended it, "<end of text>", or None where not known


@dataclass
class Done:
    """The last streamed event: all samples are complete."""

    completions: list[Completion]
    prompt_tokens: int
    completion_tokens: int
    served: dict | None = None  # a served model's: the server's kind, what was sent, what is not known and why


class Backend(abc.ABC):
    """A model behind the contract. ``name`` is the backend ("hf"); ``model`` the model it serves."""

    name: str = "?"
    capabilities = Capabilities()

    def __init__(self, model: str):
        self.model = model

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.model}"

    @abc.abstractmethod
    def stream(self, prefix: str, params: SamplingParams) -> AsyncIterator[TokenEvent | Done]:
        """Sample ``params.n`` continuations of ``prefix``, yielding tokens as they come and ``Done`` last."""

    async def complete(self, prefix: str, params: SamplingParams) -> Done:
        done = None
        async for event in self.stream(prefix, params):
            if isinstance(event, Done):
                done = event
        assert done is not None, f"{self.ref} ended its stream without Done"
        return done

    async def score(self, prefix: str, continuation: str, top: int = 5) -> list[Token]:
        """Teacher-forced logprob of every token of ``continuation`` after ``prefix``."""
        raise Unsupported(f"{self.ref} cannot score text (capability 'scoring')")

    async def score_segments(self, segments: list[str], wanted: list[int],
                             cancel: threading.Event | None = None) -> dict[int, list[Token]]:
        """Teacher-forced token logprobs of the segments at indices ``wanted``, each read after all the segments
        before it, for accounting that may run in the background (``cancel`` stops it between pieces of work).

        This default scores each wanted segment on its own; a backend that can read the whole text once, and
        yield to generation meanwhile, overrides it (hf)."""
        out = {}
        for i in wanted:
            if cancel is not None and cancel.is_set():
                raise Cancelled("cancelled")
            out[i] = await self.score("".join(segments[:i]), segments[i], top=0)
        return out

    async def score_many(self, prefix: str, continuations: list[str], eos: bool = False) -> list[float]:
        """Total logprob of each continuation after ``prefix`` (then of end-of-text, with ``eos``).

        Backends that can share the prefix's computation override this; this default scores one by one."""
        if eos:
            raise Unsupported(f"{self.ref} cannot score the end of text")
        return [sum(t.logprob for t in await self.score(prefix, c, top=0)) for c in continuations]

    async def score_answers(self, prefix: str, answers: list[str], terminators: list[str]) -> list[list[float]]:
        """logprob of each answer followed by each terminator (``"<eos>"``: the end of text): a row per answer."""
        cols = [await self.score_many(prefix, answers, eos=True) if t == "<eos>"
                else await self.score_many(prefix, [a + t for a in answers]) for t in terminators]
        return [[col[i] for col in cols] for i in range(len(answers))]

    async def next_token(self, prefix: str, k: int = 20) -> list[tuple[str, float]]:
        """The k most likely next tokens after ``prefix`` with their logprobs, most likely first."""
        raise Unsupported(f"{self.ref} cannot give a next-token distribution (capability 'next_token')")

    async def entropy(self, prefix: str) -> float | None:
        """Entropy in bits of the full next-token distribution, where the backend can see all of it."""
        return None

    async def activations(self, texts: list[str], layer: int) -> list[list[float]]:
        """Each text's mean residual-stream activation at the output of decoder block ``layer`` (steering)."""
        raise Unsupported(f"{self.ref} cannot read activations (capability 'steering')")

    async def logit_lens(self, prefix: str, token_ids: list[int], index: int, k: int = 5, steer=(),
                         steer_prompt: bool = False) -> dict:
        """What each decoder block's output predicts for token ``index`` of a continuation (docs/lens.md)."""
        raise Unsupported(f"{self.ref} shows no hidden states: the logit lens needs a local hf: model")

    def check_steer(self, steer: Sequence[Steer]) -> None:
        """Refuse, before anything runs, steering this model cannot apply (a missing layer, another width)."""
        if steer and not self.capabilities.steering:
            raise Unsupported(f"{self.ref} cannot steer: steering vectors need a local hf: or llama: model")

    def stream_sweep(self, prefix: str, params: SamplingParams,
                     row_coefs: list[float]) -> AsyncIterator[TokenEvent | Done]:
        """A steering sweep in one batch: ``params.steer`` (coefficient 1) times row_coefs[i] for sample i
        (capability 'batched_sweep')."""
        raise Unsupported(f"{self.ref} cannot run a sweep in one batch (capability 'batched_sweep')")

    def cache_stats(self) -> dict | None:
        """The prefix cache's figures (entries, tokens, bytes, peak, hits, misses), or None for a model without one."""
        return None

    def precision(self) -> dict | None:
        """What this model's figures are computed in (``{"device", "weights", "logits"}``), where it is known."""
        return None

    def vocabulary_key(self) -> str | None:
        """What identifies this model's vocabulary (two models with the same key give distributions over the same
        tokens), or None when it gives no whole distributions (capability 'distributions')."""
        return None

    def continuation_ids(self, prefix: str, continuation: str) -> tuple[list[int], list[int]]:
        """Token ids of the prefix, and of the continuation as the model reads it after the prefix."""
        raise Unsupported(f"{self.ref} does not show its token ids (capability 'distributions')")

    async def kl_per_position(self, reference: "Backend", prefix_ids: list[int], ids: list[int]) -> list[float]:
        """KL(this model ‖ reference) in nats over the whole vocabulary at each position of ``ids`` read after
        ``prefix_ids`` (teacher-forced); both models must share a vocabulary (capability 'distributions')."""
        raise Unsupported(f"{self.ref} gives no whole next-token distributions (capability 'distributions')")

    async def close(self) -> None:
        pass


class Samples:
    """The n samples of one local generation as they grow (hf, llama): stop sequences applied, each token emitted
    once it is safe, and the finished completions."""

    def __init__(self, n: int, stop: Sequence[str], emit):
        self.scanners = [StopScanner(stop) for _ in range(n)]
        self.comps = [Completion(text="") for _ in range(n)]
        self.emit = emit

    def push(self, i: int, tok: Token | None) -> bool:
        """Add a token (None: held for whole characters) to sample i; False when a stop sequence ended it."""
        for t in self.scanners[i].push(tok) if tok is not None else ():
            self.comps[i].tokens.append(t)
            self.emit(TokenEvent(i, t))
        if self.scanners[i].stopped:
            self.comps[i].finish_reason = "stop"
            self.comps[i].stopped_by = self.scanners[i].stopped_by
        return not self.scanners[i].stopped

    def ended(self, i: int) -> None:
        """Sample i reached the end of text."""
        self.comps[i].finish_reason = "stop"
        self.comps[i].stopped_by = "<end of text>"

    def done(self, prompt_tokens: int, completion_tokens: int) -> Done:
        for i, sc in enumerate(self.scanners):
            for t in sc.flush():
                self.comps[i].tokens.append(t)
                self.emit(TokenEvent(i, t))
            self.comps[i].text = "".join(t.text for t in self.comps[i].tokens)
        return Done(self.comps, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)


def check_vectors(ref: str, steer: Sequence[Steer], layers: range, width: int, why: str = "") -> None:
    """Refuse steering vectors a model cannot take, before anything runs: one not resolved, a layer outside
    ``layers`` (``why`` says why they are what they are), a width that is not the residual stream's."""
    for s in steer:
        if s.layer is None or s.vector is None:
            raise InvalidInput(f"steering vector {s.name!r} was not resolved (use it through an expansion)")
        if s.layer not in layers:
            raise InvalidInput(f"steering vector {s.name!r} is for layer {s.layer}, but {ref} steers layers "
                               f"{layers.start}..{layers.stop - 1}{why}")
        if len(s.vector) != width:
            raise InvalidInput(f"steering vector {s.name!r} has {len(s.vector)} numbers, but {ref}'s residual "
                               f"stream has {width}")


def check_length(ref: str, n_tokens: int, more: int, window: int | None) -> None:
    """Refuse, naming both numbers, a text (plus the tokens to generate) longer than a model's context window."""
    if window and n_tokens + more > window:
        raise InvalidInput(f"the text is {n_tokens:,} tokens{f' (+ {more:,} to generate)' if more else ''}, "
                           f"longer than {ref}'s context window of {window:,} tokens")


def merged_token(text: str, held: list[tuple]) -> Token:
    """One record for model tokens held back until their bytes made whole characters: (id, logprob, top[, ledger])
    each, ledger a dict of the Token's per-token figures; logprobs and figures summed (the probability of them all,
    the pressure at every position), the first one's alternatives, an id only for one token."""
    first = held[0]
    figures = {}
    for name in LEDGER_FIELDS:
        values = [h[3].get(name) for h in held if len(h) > 3 and h[3]]
        if values and len(values) == len(held) and all(v is not None for v in values):
            figures[name] = sum(values)
    logprob = None if any(h[1] is None for h in held) else sum(h[1] for h in held)
    return Token(text, logprob, first[2], id=first[0] if len(held) == 1 else None, **figures)


class ByteText:
    """Bytes of one sample's tokens to whole characters: a token that ends inside a UTF-8 character is held and
    merged into the next record (logprobs summed), as the hf backend does (llama.cpp's engine, and servers that send
    each token's bytes)."""

    def __init__(self):
        self.held: list[tuple] = []
        self.data = b""

    def push(self, tid: int, piece: bytes, logprob: float, top: tuple, figures: dict | None = None) -> Token | None:
        self.held.append((tid, logprob, top, figures))
        self.data += piece
        try:
            text = self.data.decode("utf-8")
        except UnicodeDecodeError:
            if len(self.held) < 4:
                return None
            text = self.data.decode("utf-8", errors="replace")
        out, self.held, self.data = merged_token(text, self.held), [], b""
        return out

    def flush(self) -> list[Token]:
        """What is held when the sample ends (bytes that never made a whole character)."""
        if not self.held:
            return []
        out, self.held, self.data = merged_token(self.data.decode("utf-8", errors="replace"), self.held), [], b""
        return [out]


class StopScanner:
    """Applies stop sequences to one sample's token stream.

    Text is cut before the stop sequence (as the OpenAI API does); the token records are trimmed with it so
    that they still tile the text exactly. Tokens are held back while they could be the start of a stop
    sequence, so a streamed token is never taken back.
    """

    def __init__(self, stop: Sequence[str]):
        self.stop = tuple(stop)
        self.hold = max((len(s) for s in self.stop), default=1) - 1
        self.pending: list[Token] = []
        self.text = ""  # emitted text
        self.stopped = False
        self.stopped_by: str | None = None  # the stop sequence found

    def push(self, tok: Token) -> list[Token]:
        """Feed one token; returns the tokens that are now safe to emit."""
        if self.stopped:
            return []
        self.pending.append(tok)
        pend = "".join(t.text for t in self.pending)
        # Held-back text always covers the first len(stop) - 1 characters of any new match, so searching the
        # pending text alone finds every stop sequence.
        hits = [(i, s) for i, s in ((pend.find(s), s) for s in self.stop) if i >= 0]
        if hits:
            self.stopped = True
            at, self.stopped_by = min(hits)
            out = self._take(at)
            self.pending = []
            return out
        safe = len(pend) - self.hold if self.hold else len(pend)
        out: list[Token] = []
        while self.pending and len(self.pending[0].text) <= safe:
            t = self.pending.pop(0)
            safe -= len(t.text)
            out.append(t)
            self.text += t.text
        return out

    def _take(self, chars: int) -> list[Token]:
        out = []
        for t in self.pending:
            if chars <= 0:
                break
            piece = t if len(t.text) <= chars else replace(t, text=t.text[:chars])
            out.append(piece)
            chars -= len(piece.text)
            self.text += piece.text
        return out

    def flush(self) -> list[Token]:
        """End of sampling: release what was held back."""
        out, self.pending = ([] if self.stopped else self.pending), []
        self.text += "".join(t.text for t in out)
        return out
