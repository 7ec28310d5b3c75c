"""GGUF models in process through llama.cpp (the optional extra ``llama``: llama-cpp-python, built from source): the
text level over the llama.cpp engine (engine/llama_engine.py: one evaluation of the path shared by n sequences).

``llama:gemma-3-270m`` and ``llama:smollm2-135m-instruct`` name the packaged files; ``llama:/path/model.gguf`` any
other. Here: tokenising, turning token bytes into whole characters, sampling (engine/sampler.py, the same
parameters as ``hf``: temperature, top-k, top-p, min-p, seed; control tokens other than end-of-text are never
sampled), stop sequences, token records, scoring at joins, the next-token view. Logprobs are the model's raw
log-softmax, as everywhere in loomwork. On quantized weights llama.cpp's one-token steps and its batched evaluation
of a whole text round differently: a sampled token's logprob and the same token scored afterwards differ by up to
~0.2 nats (Gemma 3 270M Q4_K_M). A node keeps the logprobs of the steps that produced it.
"""

from __future__ import annotations

import os
import re
import threading
from functools import partial
from pathlib import Path
from typing import AsyncIterator, Callable

import numpy as np

from ..engine import sampler
from ..engine.llama_engine import LlamaEngine, import_llama
from ..errors import BackendError, InvalidInput
from ..tree import Token
from .base import Backend, ByteText, Capabilities, Done, SamplingParams, Samples, TokenEvent, check_length
from .joins import PieceIndex, plan, tokens_of
from .llama_steer import LlamaSteering
from .threaded import stream_from_thread

N_CTX = 8192  # positions shared by the path and all samples (unified KV); LOOMWORK_LLAMA_CTX changes it
_CONTROL_NAME = re.compile(r"^(<(start|end)_of_\\w+>|\\[multimodal\\])$")


def gguf_file(model: str) -> Path:
    """The GGUF file a ``llama:`` reference names: a packaged model's short name or a path."""
    from .catalog import PACKAGED

    if model in PACKAGED:
        packaged = PACKAGED[model]
        if not packaged.installed():
            raise BackendError(f"llama:{model} is not installed: {packaged.install}")
        return packaged.gguf_path()
    path = Path(model).expanduser()
    if not path.is_file():
        raise InvalidInput(f"no GGUF file at {model!r} (or a packaged model: {', '.join(PACKAGED)})")
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise InvalidInput(f"{model!r} is not a GGUF model file")
    return path


class LlamaBackend(LlamaSteering, Backend):
    name = "llama"
    capabilities = Capabilities(streaming=True, logprobs=True, scoring=True, next_token=True, steering=True)

    def __init__(self, model: str, *, n_ctx: int | None = None):
        super().__init__(model)
        import_llama()  # the extra missing: one clear error before the file is looked for
        path = gguf_file(model)
        self.engine = LlamaEngine(path, n_ctx or int(os.environ.get("LOOMWORK_LLAMA_CTX") or N_CTX))
        self.n_ctx, self.window, self.n_vocab = self.engine.n_ctx, self.engine.window, self.engine.n_vocab
        self._model_thread = self.engine.thread
        self._piece_index: PieceIndex | None = None
        self._pieces_lock = threading.Lock()
        eog = self.engine.eog
        banned = [t for t in range(self.n_vocab) if t not in eog and (
            self.engine.is_control(t) or _CONTROL_NAME.match(self.engine.piece(t).decode("utf-8", "replace")))]
        self._banned = np.array(banned, dtype=np.int64)
        # every piece was read above: index them in the background, for the first score not to wait
        threading.Thread(target=self.pieces, name="loomwork-llama-pieces", daemon=True).start()

    @property
    def prefilled(self) -> int:
        """Path tokens the engine decoded so far (the rest were reused from what it held)."""
        return self.engine.prefilled

    async def close(self) -> None:
        self.engine.close()

    # -- tokens ------------------------------------------------------------------------------------------------

    def encode(self, text: str, bos: bool = True) -> list[int]:
        return self.engine.tokenize(text.encode("utf-8"), bos)

    def _top(self, lp: np.ndarray, k: int) -> tuple[tuple[str, float], ...]:
        if k <= 0:
            return ()
        idx = np.argpartition(-lp, k)[:k]
        idx = idx[np.argsort(-lp[idx])]
        return tuple((self.engine.piece(int(i)).decode("utf-8", "replace"), float(lp[i])) for i in idx)

    def _check_length(self, n_tokens: int, more: int = 0) -> None:
        check_length(self.ref, n_tokens, more, min(self.n_ctx, self.window) if self.window else self.n_ctx)

    # -- generation --------------------------------------------------------------------------------------------

    def _generate(self, prefix: str, params: SamplingParams, emit: Callable, stop_flag: threading.Event) -> Done:
        self.check_steer(params.steer)
        if any(s.coef != 0.0 for s in params.steer):  # a coefficient of 0 is no steering: the unsteered run
            return self._generate_steered(prefix, params, emit, stop_flag)
        engine = self.engine
        ids = self.encode(prefix)
        n = params.n
        self._check_length(len(ids), n * params.max_tokens)
        rng = np.random.default_rng(params.seed if params.seed is not None else 0)
        texts = [ByteText() for _ in range(n)]
        samples = Samples(n, params.stop, emit)
        used = 0
        fast = sampler.fast(params)
        with self._model_thread.urgent():
            last: list[np.ndarray] = []
            engine.prefill(ids, len(ids) - 1, None if fast else (lambda _p, row: last.append(row)))
            # the next token's figures for each live sample: one (rows × vocabulary) array of raw logits on the
            # fast path (sampler.sample_rows), else each sample's log-softmax row (sampler.sample_array)
            live = list(range(n))
            rows = np.repeat(engine.logits(1), n, axis=0) if fast else [last[0]] * n
            engine.fork(n)  # every sample starts from the path's state, decoded once
            fed: list[list[int]] = [[] for _ in range(n)]  # the tokens decoded into each sample's sequence
            pos = len(ids)
            for step in range(params.max_tokens):
                if stop_flag.is_set() or not live:
                    break
                feed = []
                for i, (tid, logprob, top, decode_kl) in zip(live, self._draws(rows, params, rng, fast)):
                    used += 1
                    if tid in engine.eog:
                        samples.ended(i)
                    elif samples.push(i, texts[i].push(tid, engine.piece(tid), logprob, top, {"decode_kl": decode_kl})):
                        feed.append((i, tid))
                live = [i for i, _tid in feed]
                if not feed or step + 1 == params.max_tokens:
                    break
                engine.decode([(tid, pos, i + 1, True) for i, tid in feed])
                for i, tid in feed:
                    fed[i].append(tid)
                rows = engine.logits(len(feed)) if fast else [engine.logprobs(j) for j in range(len(feed))]
                pos += 1
            engine.keep_samples({i + 1: ids + fed[i] for i in range(n)})
        return samples.done(len(ids), used)

    def _draws(self, rows, params: SamplingParams, rng, fast: bool) -> list[tuple]:
        """(token, raw logprob, alternatives as (text, logprob), decoding KL) for each row."""
        if fast:
            piece = self.engine.piece
            return [(tid, lp, tuple((piece(a).decode("utf-8", "replace"), alp) for a, alp in top), kl)
                    for tid, lp, top, kl in sampler.sample_rows(rows, params, self._banned, rng, params.logprobs)]
        out = []
        for lp in rows:
            tid, decode_kl = sampler.sample_array(lp, params, self._banned, rng)
            out.append((tid, float(lp[tid]), self._top(lp, params.logprobs), decode_kl))
        return out

    def stream(self, prefix: str, params: SamplingParams) -> AsyncIterator[TokenEvent | Done]:
        return stream_from_thread(lambda emit, stop: self._generate(prefix, params, emit, stop), "loomwork-llama",
                                  self._model_thread.submit)

    # -- scoring and the lens ----------------------------------------------------------------------------------

    def pieces(self) -> PieceIndex:
        """Every token's text (control tokens and pieces of characters left out), for joins.py."""
        with self._pieces_lock:
            return self._pieces_built()

    def _pieces_built(self) -> PieceIndex:
        if self._piece_index is None:
            skip = set(self._banned.tolist()) | self.engine.eog
            texts: list[str | None] = []
            for t in range(self.n_vocab):
                try:
                    texts.append(None if t in skip else self.engine.piece(t).decode("utf-8") or None)
                except UnicodeDecodeError:
                    texts.append(None)
            self._piece_index = PieceIndex(texts)
        return self._piece_index

    def _encode_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]] | None:
        """Token ids of ``text`` and each token's character span (from the bytes of its piece), or None where the
        pieces do not spell the text."""
        ids = self.encode(text)
        data = text.encode("utf-8")
        char_at = []  # byte offset -> the character it is in (a byte inside a character: that character)
        for i, ch in enumerate(text):
            char_at += [i] * len(ch.encode("utf-8"))
        char_at.append(len(text))
        offsets, at = [], 0
        for j, tid in enumerate(ids):
            if j == 0 and tid == self.engine.bos:
                offsets.append((0, 0))
                continue
            piece = self.engine.piece(tid)
            if data[at : at + len(piece)] != piece:
                return None
            offsets.append((char_at[at], char_at[at + len(piece)]))
            at += len(piece)
        return (ids, offsets) if at == len(data) else None

    def _score(self, prefix: str, continuation: str, top: int) -> list[Token]:
        """joins.py's score of ``continuation`` after ``prefix``: the canonical tokens of the whole text, a token
        straddling the join counted only for its part after it, the last token any that starts with its text."""
        full = prefix + continuation
        enc = self._encode_offsets(full)
        if enc is None:
            raise BackendError(f"{self.ref}'s token pieces do not spell this text; cannot score it")
        ids, offsets = enc
        first_scored = 1 if ids and ids[0] == self.engine.bos else 0
        terms = plan(full, ids, offsets, len(prefix), self.pieces(), first_scored)
        if not terms:
            return []
        self._check_length(len(ids))
        at_row: dict[int, list[int]] = {}
        for n, t in enumerate(terms):
            at_row.setdefault(t.position - 1, []).append(n)
        values, tops = [0.0] * len(terms), [()] * len(terms)

        def on_row(p: int, lp: np.ndarray) -> None:
            for n in at_row.get(p, ()):
                c = terms[n].candidates
                values[n] = float(lp[c]) if isinstance(c, int) else float(np.logaddexp.reduce(lp[list(c)]))
                if terms[n].sign > 0:
                    tops[n] = self._top(lp, top)

        with self._model_thread.urgent():
            self.engine.prefill(ids[: max(t.position for t in terms)], min(at_row), on_row)
        return tokens_of(terms, values, tops)

    async def score(self, prefix: str, continuation: str, top: int = 5) -> list[Token]:
        return await self._model_thread.call(partial(self._score, prefix, continuation, top))

    def _last_row(self, prefix: str) -> np.ndarray:
        ids = self.encode(prefix)
        self._check_length(len(ids))
        rows: list[np.ndarray] = []
        with self._model_thread.urgent():
            self.engine.prefill(ids, len(ids) - 1, lambda _p, row: rows.append(row))
        return rows[0]

    async def next_token(self, prefix: str, k: int = 20) -> list[tuple[str, float]]:
        lp = await self._model_thread.call(partial(self._last_row, prefix))
        return list(self._top(lp, min(k, self.n_vocab - 1)))

    async def entropy(self, prefix: str) -> float | None:
        lp = await self._model_thread.call(partial(self._last_row, prefix))
        return float(-(np.exp(lp) * lp).sum() / np.log(2))
