"""GGUF models in process through llama.cpp (the optional extra ``llama``: llama-cpp-python, built from source).

``llama:gemma-3-270m`` and ``llama:smollm2-135m-instruct`` name the packaged files; ``llama:/path/model.gguf`` any
other. The high-level ``Llama.create_completion`` has no ``n`` and re-evaluates its prompt for each sample, so this
backend drives llama.cpp's low-level API: one context with several sequences in a unified KV buffer, the path
decoded once into sequence 0 and copied to a sequence per sample (``llama_memory_seq_cp``), the samples decoded
together, one logits row per active sample. Sequence 0 stays as it is between calls: the next request decodes
only what differs from the text it holds (a re-branch from a recent node recomputes nothing but the new part).
Sliding-window models keep a full-size cache (``swa_full``) so that state can be cut back to any position.

Sampling follows the same parameters as ``hf`` (temperature, top-k, top-p, min-p, seed; control tokens other than
end-of-text are never sampled); logprobs are the model's raw log-softmax, as everywhere in loomwork. On quantized
weights llama.cpp's one-token steps and its batched evaluation of a whole text round differently: a sampled
token's logprob and the same token scored afterwards differ by up to ~0.2 nats (Gemma 3 270M Q4_K_M). A node
keeps the logprobs of the steps that produced it.
"""

from __future__ import annotations

import ctypes
import os
import re
import threading
from functools import partial
from pathlib import Path
from typing import AsyncIterator, Callable

import numpy as np

from ..errors import BackendError, InvalidInput
from ..tree import Token
from .base import MAX_N, Backend, Capabilities, Done, SamplingParams, Samples, TokenEvent, check_length, merged_token
from .joins import PieceIndex, plan, tokens_of
from ..engine.model_thread import shared as shared_model_thread
from .threaded import stream_from_thread

N_CTX = 8192  # positions shared by the path and all samples (unified KV); LOOMWORK_LLAMA_CTX changes it
_CONTROL_NAME = re.compile(r"^(<(start|end)_of_\w+>|\[multimodal\])$")


def _import():
    try:
        import llama_cpp
    except ImportError:
        raise BackendError("the llama backend needs the optional extra 'llama' (llama-cpp-python, compiled from "
                           "source: a few minutes): pip install 'loomwork[llama]'") from None
    return llama_cpp


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


class _Text:
    """Bytes of one sample's tokens to whole characters: a token that ends inside a UTF-8 character is held and
    merged into the next record (logprobs summed), as the hf backend does."""

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


class LlamaBackend(Backend):
    name = "llama"
    capabilities = Capabilities(streaming=True, logprobs=True, scoring=True, next_token=True)

    def __init__(self, model: str, *, n_ctx: int | None = None):
        super().__init__(model)
        lc = self.lc = _import()
        path = gguf_file(model)
        self.n_ctx = n_ctx or int(os.environ.get("LOOMWORK_LLAMA_CTX") or N_CTX)
        threads = os.cpu_count() or 1
        try:  # the high-level object loads the weights and tokenises; its own small context is not used
            self.llm = lc.Llama(model_path=str(path), n_ctx=64, n_batch=64, verbose=False, n_threads=threads)
        except ValueError as exc:
            raise InvalidInput(f"{path} could not be loaded as a model: {exc}") from None
        model_p = self.llm._model.model
        self.window = lc.llama_model_n_ctx_train(model_p)
        p = lc.llama_context_default_params()
        p.n_ctx, p.n_batch, p.n_ubatch = self.n_ctx, 512, 512
        p.n_seq_max, p.kv_unified, p.swa_full = MAX_N + 1, True, True
        p.n_threads = p.n_threads_batch = threads
        p.no_perf = True
        self.ctx = lc.llama_init_from_model(model_p, p)
        if not self.ctx:
            raise BackendError(f"llama.cpp could not make a context of {self.n_ctx} positions for {path}")
        self.mem = lc.llama_get_memory(self.ctx)
        self.vocab = lc.llama_model_get_vocab(model_p)
        self.n_vocab = lc.llama_vocab_n_tokens(self.vocab)
        self.batch = lc.llama_batch_init(512, 0, MAX_N + 1)
        self.eog = {t for t in range(self.n_vocab) if lc.llama_vocab_is_eog(self.vocab, t)}
        self._pieces: dict[int, bytes] = {}
        self._piece_index: PieceIndex | None = None
        self._pieces_lock = threading.Lock()
        banned = [t for t in range(self.n_vocab) if t not in self.eog and (
            lc.llama_vocab_is_control(self.vocab, t) or _CONTROL_NAME.match(self._piece(t).decode("utf-8", "replace")))]
        self._banned = np.array(banned, dtype=np.int64)
        self._held: list[int] = []  # the tokens sequence 0 holds, from position 0
        self._samples: dict[int, list[int]] = {}  # sequence -> the tokens it holds: the last generation's samples
        self.prefilled = 0  # path tokens decoded so far (the rest were reused from sequence 0)
        # decoding runs on the process's model thread, as torch's work does: ggml's OpenMP threads and torch's are
        # one libgomp, which throttles both once two threads have teams (model_thread.py)
        self._model_thread = shared_model_thread()
        # every piece was read above: index them in the background, for the first score not to wait
        threading.Thread(target=self.pieces, name="loomwork-llama-pieces", daemon=True).start()

    async def close(self) -> None:
        if getattr(self, "ctx", None):
            self.lc.llama_batch_free(self.batch)
            self.lc.llama_free(self.ctx)
            self.ctx = None

    # -- tokens ------------------------------------------------------------------------------------------------

    def encode(self, text: str, bos: bool = True) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=bos, special=False)

    def _piece(self, tid: int) -> bytes:
        piece = self._pieces.get(tid)
        if piece is None:
            buf = ctypes.create_string_buffer(64)
            n = self.lc.llama_token_to_piece(self.vocab, tid, buf, 64, 0, True)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = self.lc.llama_token_to_piece(self.vocab, tid, buf, -n, 0, True)
            piece = self._pieces[tid] = buf.raw[:n]
        return piece

    def _top(self, lp: np.ndarray, k: int) -> tuple[tuple[str, float], ...]:
        if k <= 0:
            return ()
        idx = np.argpartition(-lp, k)[:k]
        idx = idx[np.argsort(-lp[idx])]
        return tuple((self._piece(int(i)).decode("utf-8", "replace"), float(lp[i])) for i in idx)

    def _check_length(self, n_tokens: int, more: int = 0) -> None:
        check_length(self.ref, n_tokens, more, min(self.n_ctx, self.window) if self.window else self.n_ctx)

    # -- decoding ----------------------------------------------------------------------------------------------

    def _decode(self, entries: list[tuple[int, int, int, bool]]) -> None:
        """One llama_decode of (token, position, sequence, wants logits) entries (at most the batch size)."""
        b = self.batch
        b.n_tokens = len(entries)
        for j, (tok, pos, seq, logits) in enumerate(entries):
            b.token[j], b.pos[j], b.n_seq_id[j], b.logits[j] = tok, pos, 1, logits
            b.seq_id[j][0] = seq
        rc = self.lc.llama_decode(self.ctx, b)
        if rc != 0:
            raise BackendError(f"llama.cpp could not decode ({rc}): the context of {self.n_ctx} positions may be full")

    def _logprobs(self, j: int) -> np.ndarray:
        ptr = self.lc.llama_get_logits_ith(self.ctx, j)
        logits = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).astype(np.float64)
        m = logits.max()
        return logits - (m + np.log(np.exp(logits - m).sum()))

    def _prefill(self, ids: list[int], first: int, on_row: Callable[[int, np.ndarray], None] | None = None) -> None:
        """Put ``ids`` in sequence 0, decoding only what differs from what it holds (and at least from ``first``),
        and call ``on_row(position, logprobs)`` for positions ``first`` … ``len(ids) - 1``. Other sequences are
        cleared. A sample of the last generation that shares more of ``ids`` becomes sequence 0 first: continuing
        from a child just generated decodes only the join. Call with the model lock held."""
        lc = self.lc

        def shared(held: list[int]) -> int:
            same = 0
            while same < min(len(ids), len(held), first) and ids[same] == held[same]:
                same += 1
            return same

        same = shared(self._held)
        best = max(self._samples, key=lambda seq: shared(self._samples[seq]), default=None)
        if best is not None and shared(self._samples[best]) > same:
            lc.llama_memory_seq_rm(self.mem, 0, -1, -1)
            lc.llama_memory_seq_cp(self.mem, best, 0, -1, -1)
            self._held, same = self._samples[best], shared(self._samples[best])
        self._samples = {}
        for seq in range(1, MAX_N + 1):
            lc.llama_memory_seq_rm(self.mem, seq, -1, -1)
        if not lc.llama_memory_seq_rm(self.mem, 0, same, -1):
            lc.llama_memory_clear(self.mem, True)  # a state that cannot be cut (should not happen with swa_full)
            same = 0
        self._held = ids[:same]
        for start in range(same, len(ids), self.batch_size):
            chunk = range(start, min(start + self.batch_size, len(ids)))
            self._decode([(ids[p], p, 0, p >= first) for p in chunk])
            self.prefilled += len(chunk)
            self._held = ids[: chunk[-1] + 1]
            if on_row is not None:
                wanted = [p for p in chunk if p >= first]
                for p in wanted:
                    on_row(p, self._logprobs(p - chunk[0]))

    batch_size = 512

    def _sample(self, lp: np.ndarray, params: SamplingParams, rng: np.random.Generator) -> tuple[int, float]:
        """A token, and KL(sampling distribution ‖ model distribution) in nats (as hf's _sample)."""
        scores = lp.copy()
        if self._banned.size:
            scores[self._banned] = -np.inf
        if params.temperature == 0:
            tid = int(scores.argmax())
            return tid, float(-lp[tid])
        scores /= params.temperature
        if params.top_k:
            kth = np.partition(scores, -min(params.top_k, scores.size))[-min(params.top_k, scores.size)]
            scores[scores < kth] = -np.inf
        probs = np.exp(scores - scores.max())
        probs /= probs.sum()
        if params.top_p < 1.0:
            order = np.argsort(-probs)
            cum = np.cumsum(probs[order])
            drop = order[(cum - probs[order]) >= params.top_p]  # keep the smallest set reaching top_p
            probs[drop] = 0.0
            probs /= probs.sum()
        if params.min_p > 0:
            probs[probs < probs.max() * params.min_p] = 0.0
            probs /= probs.sum()
        live = probs > 0
        kl = float(np.sum(probs[live] * (np.log(probs[live]) - lp[live])))
        return int(rng.choice(probs.size, p=probs)), max(kl, 0.0)

    def _generate(self, prefix: str, params: SamplingParams, emit: Callable, stop_flag: threading.Event) -> Done:
        ids = self.encode(prefix)
        n = params.n
        self._check_length(len(ids), n * params.max_tokens)
        rng = np.random.default_rng(params.seed if params.seed is not None else 0)
        texts = [_Text() for _ in range(n)]
        samples = Samples(n, params.stop, emit)
        used = 0
        with self._model_thread.urgent():
            last: list[np.ndarray] = []
            self._prefill(ids, len(ids) - 1, lambda _p, row: last.append(row))
            for seq in range(1, n + 1):  # every sample starts from the path's state, decoded once
                self.lc.llama_memory_seq_cp(self.mem, 0, seq, -1, -1)
            rows = {i: last[0] for i in range(n)}  # sample -> logprobs of its next token
            fed: list[list[int]] = [[] for _ in range(n)]  # the tokens decoded into each sample's sequence
            pos = len(ids)
            for step in range(params.max_tokens):
                if stop_flag.is_set() or not rows:
                    break
                feed = []
                for i, lp in list(rows.items()):
                    tid, decode_kl = self._sample(lp, params, rng)
                    used += 1
                    if tid in self.eog:
                        samples.ended(i)
                        del rows[i]
                    elif samples.push(i, texts[i].push(tid, self._piece(tid), float(lp[tid]), self._top(lp, params.logprobs),
                                                                {"decode_kl": decode_kl})):
                        feed.append((i, tid))
                    else:
                        del rows[i]
                if not feed or step + 1 == params.max_tokens:
                    break
                self._decode([(tid, pos, i + 1, True) for i, tid in feed])
                for i, tid in feed:
                    fed[i].append(tid)
                rows = {i: self._logprobs(j) for j, (i, _tid) in enumerate(feed)}
                pos += 1
            self._samples = {i + 1: ids + fed[i] for i in range(n)}
        return samples.done(len(ids), used)

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
            skip = set(self._banned.tolist()) | self.eog
            texts: list[str | None] = []
            for t in range(self.n_vocab):
                try:
                    texts.append(None if t in skip else self._piece(t).decode("utf-8") or None)
                except UnicodeDecodeError:
                    texts.append(None)
            self._piece_index = PieceIndex(texts)
        return self._piece_index

    def _encode_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]] | None:
        """Token ids of ``text`` and each token's character span (from the bytes of its piece), or None where the
        pieces do not spell the text."""
        ids = self.encode(text)
        bos = self.lc.llama_vocab_bos(self.vocab)
        data = text.encode("utf-8")
        char_at = []  # byte offset -> the character it is in (a byte inside a character: that character)
        for i, ch in enumerate(text):
            char_at += [i] * len(ch.encode("utf-8"))
        char_at.append(len(text))
        offsets, at = [], 0
        for j, tid in enumerate(ids):
            if j == 0 and tid == bos:
                offsets.append((0, 0))
                continue
            piece = self._piece(tid)
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
        first_scored = 1 if ids and ids[0] == self.lc.llama_vocab_bos(self.vocab) else 0
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
            self._prefill(ids[: max(t.position for t in terms)], min(at_row), on_row)
        return tokens_of(terms, values, tops)

    async def score(self, prefix: str, continuation: str, top: int = 5) -> list[Token]:
        return await self._model_thread.call(partial(self._score, prefix, continuation, top))

    def _last_row(self, prefix: str) -> np.ndarray:
        ids = self.encode(prefix)
        self._check_length(len(ids))
        rows: list[np.ndarray] = []
        with self._model_thread.urgent():
            self._prefill(ids, len(ids) - 1, lambda _p, row: rows.append(row))
        return rows[0]

    async def next_token(self, prefix: str, k: int = 20) -> list[tuple[str, float]]:
        lp = await self._model_thread.call(partial(self._last_row, prefix))
        return list(self._top(lp, min(k, self.n_vocab - 1)))

    async def entropy(self, prefix: str) -> float | None:
        lp = await self._model_thread.call(partial(self._last_row, prefix))
        return float(-(np.exp(lp) * lp).sum() / np.log(2))
