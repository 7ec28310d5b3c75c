"""The llama.cpp engine: token ids in, logits out, for one GGUF model through llama.cpp's low-level API (the
high-level ``Llama.create_completion`` has no ``n`` and re-evaluates its prompt for each sample). It knows no text
beyond the bytes of a token's piece; the model layer (backends/llama.py) tokenises, detokenises, samples and
records tokens.

One context holds several sequences in a unified KV buffer: a path is decoded once into sequence 0 and copied to a
sequence per sample (``fork``), the samples are decoded together, one logits row per active sample. Sequence 0
stays as it is between calls: the next request decodes only what differs from the text it holds, and a sample of
the last generation that shares more of a new path becomes sequence 0 first (continuing from a child just
generated decodes only the join). Sliding-window models keep a full-size cache (``swa_full``) so that state can be
cut back to any position.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import BackendError, InvalidInput
from .model_thread import shared as shared_model_thread

MAX_SEQS = 65  # sequence 0 for the path, then one per sample (SamplingParams allows 64)


_QUIET = None  # llama.cpp's log callback, kept alive for as long as the process


def import_llama():
    global _QUIET
    try:
        import llama_cpp
    except ImportError:
        raise BackendError("the llama backend needs the optional extra 'llama' (llama-cpp-python, compiled from "
                           "source: a few minutes): pip install 'loomwork[llama]'") from None
    if _QUIET is None and not os.environ.get("LOOMWORK_LLAMA_LOG"):
        # llama.cpp logs every context it makes to stderr ("using full-size SWA cache" …): noise in a person's
        # terminal; errors still reach them as exceptions. LOOMWORK_LLAMA_LOG=1 keeps the log.
        _QUIET = llama_cpp.llama_log_callback(lambda level, text, data: None)
        llama_cpp.llama_log_set(_QUIET, None)
    return llama_cpp


class LlamaEngine:
    batch_size = 512

    def __init__(self, path: Path, n_ctx: int):
        lc = self.lc = import_llama()
        self.n_ctx = n_ctx
        threads = os.cpu_count() or 1
        try:  # the high-level object loads the weights and tokenises; its own small context is not used
            self.llm = lc.Llama(model_path=str(path), n_ctx=64, n_batch=64, verbose=False, n_threads=threads)
        except ValueError as exc:
            raise InvalidInput(f"{path} could not be loaded as a model: {exc}") from None
        model_p = self.llm._model.model
        self.window = lc.llama_model_n_ctx_train(model_p)
        p = lc.llama_context_default_params()
        p.n_ctx, p.n_batch, p.n_ubatch = n_ctx, self.batch_size, self.batch_size
        p.n_seq_max, p.kv_unified, p.swa_full = MAX_SEQS, True, True
        p.n_threads = p.n_threads_batch = threads
        p.no_perf = True
        self.ctx = lc.llama_init_from_model(model_p, p)
        if not self.ctx:
            raise BackendError(f"llama.cpp could not make a context of {n_ctx} positions for {path}")
        self.mem = lc.llama_get_memory(self.ctx)
        self.n_embd, self.n_layer = lc.llama_model_n_embd(model_p), lc.llama_model_n_layer(model_p)
        self.vocab = lc.llama_model_get_vocab(model_p)
        self.n_vocab = lc.llama_vocab_n_tokens(self.vocab)
        self.bos = lc.llama_vocab_bos(self.vocab)
        self.batch = lc.llama_batch_init(self.batch_size, 0, MAX_SEQS)
        self.eog = {t for t in range(self.n_vocab) if lc.llama_vocab_is_eog(self.vocab, t)}
        self._pieces: dict[int, bytes] = {}
        self._held: list[int] = []  # the tokens sequence 0 holds, from position 0
        self._samples: dict[int, list[int]] = {}  # sequence -> the tokens it holds: the last generation's samples
        self.prefilled = 0  # path tokens decoded so far (the rest were reused from sequence 0)
        # decoding runs on the process's model thread, as torch's work does: ggml's OpenMP threads and torch's are
        # one libgomp, which throttles both once two threads have teams (model_thread.py)
        self.thread = shared_model_thread()

    def close(self) -> None:
        if getattr(self, "ctx", None):
            self.lc.llama_batch_free(self.batch)
            self.lc.llama_free(self.ctx)
            self.ctx = None

    # -- tokens ------------------------------------------------------------------------------------------------

    def tokenize(self, data: bytes, bos: bool = True) -> list[int]:
        return self.llm.tokenize(data, add_bos=bos, special=False)

    def is_control(self, tid: int) -> bool:
        return bool(self.lc.llama_vocab_is_control(self.vocab, tid))

    def piece(self, tid: int) -> bytes:
        """The bytes of one token's piece (cached: alternatives repeat)."""
        piece = self._pieces.get(tid)
        if piece is None:
            buf = ctypes.create_string_buffer(64)
            n = self.lc.llama_token_to_piece(self.vocab, tid, buf, 64, 0, True)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = self.lc.llama_token_to_piece(self.vocab, tid, buf, -n, 0, True)
            piece = self._pieces[tid] = buf.raw[:n]
        return piece

    # -- decoding ----------------------------------------------------------------------------------------------

    def decode(self, entries: list[tuple[int, int, int, bool]]) -> None:
        """One llama_decode of (token, position, sequence, wants logits) entries (at most the batch size)."""
        b = self.batch
        b.n_tokens = len(entries)
        for j, (tok, pos, seq, logits) in enumerate(entries):
            b.token[j], b.pos[j], b.n_seq_id[j], b.logits[j] = tok, pos, 1, logits
            b.seq_id[j][0] = seq
        rc = self.lc.llama_decode(self.ctx, b)
        if rc != 0:
            raise BackendError(f"llama.cpp could not decode ({rc}): the context of {self.n_ctx} positions may be full")

    def steer(self, by_layer: dict[int, np.ndarray] | None) -> None:
        """Add ``by_layer[L]`` to the output of block L in every decode from now on, until ``steer(None)``:
        llama.cpp's control vector, one for the whole context (so steered and unsteered rows are decoded in
        separate calls). Block 0 cannot be steered (llama.cpp's buffer starts at block 1)."""
        lc = self.lc
        if not by_layer:
            rc = lc.llama_set_adapter_cvec(self.ctx, None, 0, self.n_embd, -1, -1)
        else:
            data = np.zeros((self.n_layer, self.n_embd), np.float32)  # row i: block i + 1
            for layer, vec in by_layer.items():
                data[layer - 1] += np.asarray(vec, np.float32)
            rc = lc.llama_set_adapter_cvec(self.ctx, data.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), data.size,
                                           self.n_embd, min(by_layer), max(by_layer))
        if rc != 0:
            raise BackendError(f"llama.cpp could not set the steering vectors ({rc})")

    def logits(self, m: int) -> np.ndarray:
        """The raw float32 logits of the ``m`` rows the last decode asked for, as one (m, vocabulary) array (a view
        of llama.cpp's buffer: use it before the next decode)."""
        ptr = self.lc.llama_get_logits(self.ctx)
        return np.ctypeslib.as_array(ptr, shape=(m, self.n_vocab))

    def logprobs(self, j: int) -> np.ndarray:
        """The log-softmax (float64) of the ``j``-th row of logits the last decode asked for."""
        ptr = self.lc.llama_get_logits_ith(self.ctx, j)
        logits = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).astype(np.float64)
        m = logits.max()
        return logits - (m + np.log(np.exp(logits - m).sum()))

    def prefill(self, ids: list[int], first: int, on_row: Callable[[int, np.ndarray], None] | None = None) -> None:
        """Put ``ids`` in sequence 0, decoding only what differs from what it holds (and at least from ``first``),
        and call ``on_row(position, logprobs)`` for positions ``first`` … ``len(ids) - 1``. Other sequences are
        cleared. A sample of the last generation that shares more of ``ids`` becomes sequence 0 first: continuing
        from a child just generated decodes only the join. Call on the model thread."""
        lc = self.lc

        def shared(held: list[int]) -> int:
            same = 0
            while same < min(len(ids), len(held), first) and ids[same] == held[same]:
                same += 1
            return same

        same = shared(self._held)
        best = max(self._samples, key=lambda seq: shared(self._samples[seq]), default=None)
        if best is not None and shared(self._samples[best]) > same:
            # the sample's state alone, moved into sequence 0 through llama.cpp's per-sequence state: with
            # llama-cpp-python 0.3.36, removing the other samples' sequences after a seq_cp changes what a sample
            # decoded in batches with them attends to (measured: 0.1-1.5 nats off a fresh pass); this stays exact
            if self._move_to_zero(best):
                self._held, same = self._samples[best], shared(self._samples[best])
            else:
                self._held, same = [], 0
        self._samples = {}
        for seq in range(1, MAX_SEQS):
            lc.llama_memory_seq_rm(self.mem, seq, -1, -1)
        if not lc.llama_memory_seq_rm(self.mem, 0, same, -1):
            lc.llama_memory_clear(self.mem, True)  # a state that cannot be cut (should not happen with swa_full)
            same = 0
        self._held = ids[:same]
        for start in range(same, len(ids), self.batch_size):
            chunk = range(start, min(start + self.batch_size, len(ids)))
            self.decode([(ids[p], p, 0, p >= first) for p in chunk])
            self.prefilled += len(chunk)
            self._held = ids[: chunk[-1] + 1]
            if on_row is not None:
                for p in chunk:
                    if p >= first:
                        on_row(p, self.logprobs(p - chunk[0]))

    def _move_to_zero(self, seq: int) -> bool:
        """Sequence 0 becomes what ``seq`` holds, and nothing else is kept; False (everything cleared) if llama.cpp
        could not copy its state."""
        lc = self.lc
        size = lc.llama_state_seq_get_size(self.ctx, seq)
        buf = (ctypes.c_uint8 * size)()
        got = lc.llama_state_seq_get_data(self.ctx, buf, size, seq)
        lc.llama_memory_clear(self.mem, True)
        return bool(got) and lc.llama_state_seq_set_data(self.ctx, buf, got, 0) == got

    def fork(self, n: int) -> None:
        """Sequences 1 … n start from the path's state in sequence 0 (decoded once)."""
        for seq in range(1, n + 1):
            self.lc.llama_memory_seq_cp(self.mem, 0, seq, -1, -1)

    def copy(self, src: int, dst: int) -> None:
        """Sequence ``dst`` becomes what sequence ``src`` holds (cells shared, as fork's)."""
        self.lc.llama_memory_seq_rm(self.mem, dst, -1, -1)
        self.lc.llama_memory_seq_cp(self.mem, src, dst, -1, -1)

    def start_steered(self, ids: list[int], by_layer: dict[int, np.ndarray], whole: bool) -> np.ndarray:
        """Sequence 1: the path of sequence 0 (already prefilled, unsteered) with steering at its last position,
        which predicts the first new token, or at every position when ``whole``; the log-softmax of that last
        position. The path's unsteered state in sequence 0 stays as it is."""
        lc = self.lc
        lc.llama_memory_seq_rm(self.mem, 1, -1, -1)
        first = 0 if whole else len(ids) - 1
        if first:
            lc.llama_memory_seq_cp(self.mem, 0, 1, 0, first)  # positions [0, first): shared, unsteered
        self.steer(by_layer)
        try:
            for start in range(first, len(ids), self.batch_size):
                chunk = range(start, min(start + self.batch_size, len(ids)))
                self.decode([(ids[p], p, 1, p == len(ids) - 1) for p in chunk])
        finally:
            self.steer(None)
        return self.logprobs(len(ids) - 1 - chunk[0])

    def keep_samples(self, samples: dict[int, list[int]]) -> None:
        """What each sample's sequence holds now, so that a next path continuing one of them decodes only the
        rest (prefill)."""
        self._samples = samples
