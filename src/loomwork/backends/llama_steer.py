"""Activation steering in the llama.cpp engine (mixed into LlamaBackend): loomwork's vectors applied as llama.cpp's
control vector (added to the output of their decoder block, the place the torch engine's hooks add them; measured
on Gemma 3 270M: a vector at block L in both engines gives next-token distributions 0.007–0.012 nats apart, the
quantization's difference, against 0.7–2.7 nats one block off). llama.cpp has one control vector per context, so
each step decodes the steered samples with it and then their unsteered twins without it, fed the same tokens: every
token gets the unsteered model's logprob and KL(steered ‖ unsteered), exactly as in the torch engine
(docs/metrics.md, "Steering"). The twins' states are the ones kept for the next request: a child generated with
steering is later read as text, unsteered.
"""

from __future__ import annotations

import threading
from typing import Callable

import numpy as np

from ..engine import sampler
from ..engine.llama_engine import MAX_SEQS
from ..errors import InvalidInput, Unsupported
from .base import ByteText, Done, SamplingParams, Samples, check_vectors

MAX_STEERED_N = (MAX_SEQS - 1) // 2  # a sequence for each sample and one for its twin


class LlamaSteering:
    """Needs from the backend: engine (engine/llama_engine.py), ref, encode, _banned, _top, _check_length,
    _model_thread."""

    def check_steer(self, steer) -> None:
        """Refuse vectors this model cannot take: block 0 (llama.cpp steers from block 1), a block out of range, a
        width that is not its hidden size."""
        check_vectors(self.ref, steer, range(1, self.engine.n_layer), self.engine.n_embd,
                      " (llama.cpp's control vectors start at block 1)")

    async def activations(self, texts: list[str], layer: int) -> list[list[float]]:
        raise Unsupported(f"llama.cpp does not show a block's activations: make the vector with the hf: model of "
                          f"the same weights (hf:{self.model} for a packaged model); it applies here")

    @staticmethod
    def by_layer(steer) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        for s in steer:
            delta = np.asarray(s.vector, np.float32) * s.coef
            out[s.layer] = out[s.layer] + delta if s.layer in out else delta
        return out

    def _generate_steered(self, prefix: str, params: SamplingParams, emit: Callable,
                          stop_flag: threading.Event) -> Done:
        engine = self.engine
        n = params.n
        if n > MAX_STEERED_N:
            raise InvalidInput(f"at most {MAX_STEERED_N} samples at once with steering on a llama: model "
                               "(each has an unsteered twin)")
        ids = self.encode(prefix)
        self._check_length(len(ids), 2 * n * params.max_tokens)
        vectors = self.by_layer([s for s in params.steer if s.coef != 0.0])
        rng = np.random.default_rng(params.seed if params.seed is not None else 0)
        texts = [ByteText() for _ in range(n)]
        samples = Samples(n, params.stop, emit)
        used = 0
        twin = lambda i: n + 1 + i  # noqa: E731  (sample i's sequence is i + 1)
        with self._model_thread.urgent():
            try:
                last: list[np.ndarray] = []
                engine.prefill(ids, len(ids) - 1, lambda _p, row: last.append(row))  # sequence 0: unsteered
                base_first = last[0]
                steered_first = engine.start_steered(ids, vectors, params.steer_prompt)  # in sequence 1
                for i in range(1, n):
                    engine.copy(1, i + 1)
                for i in range(n):
                    engine.copy(0, twin(i))
                rows = {i: (steered_first, base_first) for i in range(n)}  # sample -> (steered, unsteered) rows
                fed: list[list[int]] = [[] for _ in range(n)]
                pos = len(ids)
                for step in range(params.max_tokens):
                    if stop_flag.is_set() or not rows:
                        break
                    feed = []
                    for i, (lp, base) in list(rows.items()):
                        tid, decode_kl = sampler.sample_array(lp, params, self._banned, rng)
                        used += 1
                        p = np.exp(lp)
                        figures = {"decode_kl": decode_kl, "base_logprob": float(base[tid]),
                                   "steer_kl": max(0.0, float(np.sum(p * (lp - base))))}
                        if tid in engine.eog:
                            samples.ended(i)
                            del rows[i]
                        elif samples.push(i, texts[i].push(tid, engine.piece(tid), float(lp[tid]),
                                                           self._top(lp, params.logprobs), figures)):
                            feed.append((i, tid))
                        else:
                            del rows[i]
                    if not feed or step + 1 == params.max_tokens:
                        break
                    engine.steer(vectors)
                    engine.decode([(tid, pos, i + 1, True) for i, tid in feed])
                    steered = [engine.logprobs(j) for j in range(len(feed))]  # read before the next decode
                    engine.steer(None)
                    engine.decode([(tid, pos, twin(i), True) for i, tid in feed])
                    rows = {i: (steered[j], engine.logprobs(j)) for j, (i, _tid) in enumerate(feed)}
                    for i, tid in feed:
                        fed[i].append(tid)
                    pos += 1
                # the unsteered twins hold the samples' text as a later request reads it
                engine.keep_samples({twin(i): ids + fed[i] for i in range(n)})
            finally:
                engine.steer(None)
        return samples.done(len(ids), used)
