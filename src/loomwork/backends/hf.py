"""Local transformers models on torch (CPU by default): the text level over the torch engine
(engine/torch_engine.py, token ids in, logits out).

Generation prefills the prefix once, forks its state to the n samples and decodes them as one batch (the
nanochat engine's shape), dropping finished samples from the batch. Per-token logprobs are the raw model
log-softmax, so they equal a teacher-forced pass over the same tokens. Here: tokenising and detokenising, the
sampler's settings and its decoding KL, stop sequences, token records with their ledger figures, steering's
twin rows; the engine holds the model, its states and the prefix cache.
"""

from __future__ import annotations

import re
import threading
from contextlib import ExitStack
from functools import partial
from typing import AsyncIterator, Callable

from ..engine import sampler
from ..engine.device import check_kv_budget
from ..engine.device import resolve as resolve_placement
from ..engine.kv_cache import PrefixCache, budget_from_env, parse_budget
from ..engine.model_thread import shared as shared_model_thread
from ..engine.torch_engine import TorchEngine
from ..errors import InvalidInput
from ..tree import Token
from .base import Backend, Capabilities, Done, SamplingParams, Samples, TokenEvent, check_length, merged_token
from .hf_load import load, require_torch
from .hf_score import HFScoring
from .hf_steer import HFSteering
from .threaded import stream_from_thread

_CONTROL_NAME = re.compile(r"^(<(start|end)_of_\w+>|\[multimodal\])$")


class _Detok:
    """Incremental detokenisation of one sample.

    Text is decoded with a few tokens of left context, so tokenizers that drop a leading space at the start of a
    sequence still give the right text. Tokens that end inside a multi-byte character are held and merged
    into the next record (logprobs summed), so every record's text is whole characters.
    """

    def __init__(self, tok, context_ids: list[int]):
        self.tok = tok
        self.ctx = context_ids
        self.base = tok.decode(context_ids, skip_special_tokens=False)
        self.ids: list[int] = []
        self.emitted = 0
        self.held: list[tuple] = []

    def push(self, token_id: int, logprob: float, top: tuple, figures: dict | None = None) -> Token | None:
        self.ids.append(token_id)
        self.held.append((token_id, logprob, top, figures))
        text = self.tok.decode(self.ctx + self.ids, skip_special_tokens=False)[len(self.base):]
        if text.endswith("\ufffd") and len(self.held) < 4:
            return None
        piece = text[self.emitted:]
        self.emitted = len(text)
        out, self.held = merged_token(piece, self.held), []
        return out


class HFBackend(HFScoring, HFSteering, Backend):
    name = "hf"
    capabilities = Capabilities(streaming=True, logprobs=True, scoring=True, next_token=True, steering=True,
                                batched_sweep=True, distributions=True)

    def __init__(self, model: str, *, lm=None, tokenizer=None, kv_budget: int | str | None = None,
                 prefix_cache: bool = True):
        super().__init__(model)
        self.torch = require_torch()
        # the placement and the budget are checked before the (slow) load, so a bad LOOMWORK_DEVICE, LOOMWORK_DTYPE
        # or LOOMWORK_KV_BUDGET fails at once
        placement = resolve_placement() if lm is None else None
        budget = kv_budget if kv_budget is not None else budget_from_env()
        if placement is not None and prefix_cache:
            check_kv_budget(parse_budget(budget), placement)
        kv = PrefixCache(budget) if prefix_cache else None
        # every tensor operation runs on the process's model thread (engine/model_thread.py says why), which also
        # takes people's requests before background scoring
        self._model_thread = shared_model_thread()
        if lm is None:
            lm, tokenizer = self._model_thread.run(lambda: load(model, placement))
        self.engine = TorchEngine(lm, kv=kv)
        self.lm, self.tok = lm, tokenizer
        self.window = self.engine.window
        eos = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
        gen_eos = getattr(getattr(lm, "generation_config", None), "eos_token_id", None)
        eos |= set(gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos] if gen_eos is not None else [])
        self.eos_ids = eos
        # Sampling never picks control tokens other than end-of-text (Gemma's base model would otherwise emit
        # <start_of_image> and the like into prose); their logprobs are still reported as they are.
        # GGUF conversion loses the "control" flag of Gemma's image placeholders, so those are matched by name.
        special = {i for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items()
                   if t.special or _CONTROL_NAME.match(str(t.content))}
        banned = sorted((special | set(tokenizer.all_special_ids)) - eos)
        self._banned = self.engine.tensor(banned, dtype=self.torch.long) if banned else None
        self._anchor = tokenizer.encode("a", add_special_tokens=False)[-1:]
        self._pieces: dict[int, str] = {}
        self._vocab_key: str | None = None
        self.start_pieces()

    # -- helpers -----------------------------------------------------------------------------------------------

    def _check_length(self, n_tokens: int, more: int = 0) -> None:
        check_length(self.ref, n_tokens, more, self.window)

    def encode(self, text: str) -> list[int]:
        """Token ids of a prefix, with the model's start token (base models expect it)."""
        return self.tok.encode(text, add_special_tokens=True)

    def piece(self, token_id: int) -> str:
        """Text of one token in mid-sentence (for alternatives); cached, since alternatives repeat."""
        text = self._pieces.get(token_id)
        if text is None:
            a = self.tok.decode(self._anchor, skip_special_tokens=False)
            text = self._pieces[token_id] = self.tok.decode(self._anchor + [token_id], skip_special_tokens=False)[len(a):]
        return text

    def _top(self, logprobs_row, k: int) -> tuple[tuple[str, float], ...]:
        return self._tops(logprobs_row[None], k)[0]

    def _tops(self, logprobs, k: int) -> list[tuple[tuple[str, float], ...]]:
        """The k best tokens of each row, with one top-k over the whole batch."""
        if k <= 0:
            return [()] * logprobs.shape[0]
        vals, idx = logprobs.topk(min(k, logprobs.shape[-1]), dim=-1)
        return [tuple((self.piece(i), v) for v, i in zip(vr, ir)) for vr, ir in zip(vals.tolist(), idx.tolist())]

    def _sample(self, logprobs, params: SamplingParams, gen):
        """One token per row, and KL(sampling distribution ‖ model distribution) at each row in nats: the pressure
        of the decoding settings (docs/metrics.md). Control tokens are never sampled (engine/sampler.py)."""
        return sampler.sample(self.torch, logprobs, params, self._banned, gen)

    def _draw(self, probs, gen):
        return sampler.draw(self.torch, probs, gen)

    def cache_stats(self) -> dict | None:
        stats = self.engine.cache_stats()
        return None if stats is None else {**stats, "device": str(self.engine.device)}

    def precision(self) -> dict | None:
        return {"device": str(self.engine.device), "weights": self.engine.dtype, "logits": "float32"}

    # -- generation (runs in a worker thread) ------------------------------------------------------------------

    def _generate(self, prefix: str, params: SamplingParams, emit: Callable, stop_flag: threading.Event,
                  row_coefs: list[float] | None = None) -> Done:
        """``row_coefs``: a steering sweep in one batch, sample i's steering times row_coefs[i] (params.n rows)."""
        torch = self.torch
        ids = self.encode(prefix)
        self._check_length(len(ids), params.max_tokens)
        n = params.n
        # a coefficient of 0 is no steering: exactly the unsteered run (its record still names the vector)
        steer = [s for s in params.steer if s.coef != 0.0]
        self.check_steer(params.steer)
        scale = None
        if row_coefs is not None:
            if len(row_coefs) != n or not steer or params.steer_prompt:
                raise InvalidInput("a sweep steers new tokens with one coefficient for each of its samples")
            coefs = self.engine.tensor(row_coefs, dtype=torch.float32)
        gen = self.engine.generator(params.seed if params.seed is not None else 0)
        detoks = [_Detok(self.tok, ids[-4:]) for _ in range(n)]
        samples = Samples(n, params.stop, emit)
        used = 0
        rows = list(range(n))  # sample index of each batch row (with steering, the unsteered twins follow them)
        # where each row's state may be stored: steered rows only where the whole path was steered
        steered_variant = (self.engine.steer_key(steer) if params.steer_prompt else None) if steer else ()
        if row_coefs is not None:
            def scale():  # the coefficient of each steered row still running
                return coefs[self.engine.tensor(rows, dtype=torch.long)] if len(rows) != n else coefs
        with self._model_thread.urgent(), torch.inference_mode(), ExitStack() as hooks:
            if steer:
                cache, logits = self.engine.steered_start(ids, n, steer, params.steer_prompt, scale)
                hooks.enter_context(self.engine.steered(steer, lambda: len(rows), scale))  # the steered rows come first
            else:
                cache, last = self.engine.prefill(ids, len(ids) - 1, stop_flag)
                logits = last[-1:].expand(n, -1)
                self.engine.fork(cache, n)
            row_ids: list[list[int]] = [[] for _ in range(n)]  # the tokens each sample fed to the model

            def keep_row(r: int, i: int) -> None:
                self.engine.keep_row(ids, row_ids[i], cache, r, steered_variant)
                if steer:
                    self.engine.keep_row(ids, row_ids[i], cache, len(rows) + r)  # its unsteered twin

            for _step in range(params.max_tokens):
                if stop_flag.is_set():
                    break
                m = len(rows)
                all_lp = torch.log_softmax(logits, dim=-1)
                logprobs = all_lp[:m]
                chosen, decode_kl = self._sample(logprobs, params, gen)
                picked = logprobs.gather(-1, chosen[:, None])[:, 0].tolist()
                figures = [{"decode_kl": kl} for kl in decode_kl.tolist()]
                if steer:
                    base = all_lp[m:]
                    steer_kl = (logprobs.exp() * (logprobs - base)).sum(-1).clamp(min=0.0).tolist()
                    base_lp = base.gather(-1, chosen[:, None])[:, 0].tolist()
                    for r, f in enumerate(figures):
                        f.update(base_logprob=base_lp[r], steer_kl=steer_kl[r])
                tops = self._tops(logprobs, params.logprobs)
                keep = []
                for r, i in enumerate(rows):
                    tid = int(chosen[r])
                    used += 1
                    if tid in self.eos_ids:
                        samples.ended(i)
                    elif samples.push(i, detoks[i].push(tid, picked[r], tops[r], figures[r])):
                        keep.append(r)
                for r in range(m):
                    if r not in keep:  # a finished sample leaves the batch: its state goes to the prefix cache
                        keep_row(r, rows[r])
                if not keep:
                    rows = []
                    break
                if len(keep) < m:
                    self.engine.select(cache, keep + [m + r for r in keep] if steer else keep)
                    chosen = chosen[keep]
                    rows = [rows[r] for r in keep]
                if _step + 1 == params.max_tokens:
                    break
                feed = torch.cat([chosen, chosen]) if steer else chosen
                logits = self.engine.step(feed, cache)
                for r, i in enumerate(rows):
                    row_ids[i].append(int(chosen[r]))
            for r, i in enumerate(list(rows)):  # the samples still running when the generation ended
                keep_row(r, i)
        return samples.done(len(ids), used)

    def stream(self, prefix: str, params: SamplingParams) -> AsyncIterator[TokenEvent | Done]:
        return stream_from_thread(lambda emit, stop: self._generate(prefix, params, emit, stop), "loomwork-hf-generate",
                                  self._model_thread.submit)

    def stream_sweep(self, prefix: str, params: SamplingParams, row_coefs: list[float]) -> AsyncIterator[TokenEvent | Done]:
        """One batch for a steering sweep: ``params.steer`` (coefficient 1) times row_coefs[i] for sample i."""
        return stream_from_thread(lambda emit, stop: self._generate(prefix, params, emit, stop, row_coefs),
                                  "loomwork-hf-sweep", self._model_thread.submit)

    # -- scoring (hf_score.py; these run it on the model thread, off the event loop) ---------------------------

    async def score(self, prefix: str, continuation: str, top: int = 5) -> list[Token]:
        return await self._model_thread.call(partial(self._score, prefix, continuation, top))

    async def score_segments(self, segments: list[str], wanted: list[int], cancel=None) -> dict[int, list[Token]]:
        return await self._model_thread.call(partial(self._score_segments, segments, wanted, cancel), urgent=False)

    async def score_many(self, prefix: str, continuations: list[str], eos: bool = False) -> list[float]:
        return await self._model_thread.call(partial(self._score_many, prefix, continuations, eos))

    async def score_answers(self, prefix: str, answers: list[str], terminators: list[str]) -> list[list[float]]:
        return await self._model_thread.call(partial(self._score_answers, prefix, answers, terminators))

    async def next_token(self, prefix: str, k: int = 20) -> list[tuple[str, float]]:
        return await self._model_thread.call(partial(self._next_token, prefix, k))

    async def entropy(self, prefix: str) -> float | None:
        return await self._model_thread.call(partial(self._entropy, prefix))

    async def activations(self, texts: list[str], layer: int) -> list[list[float]]:
        return await self._model_thread.call(partial(self._activations, texts, layer))

    # -- whole distributions (per-token KL between models sharing a vocabulary) ---------------------------------

    def vocabulary_key(self) -> str | None:
        if self._vocab_key is None:
            import hashlib
            import json

            vocab = sorted(self.tok.get_vocab().items())
            self._vocab_key = hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode()).hexdigest()
        return self._vocab_key

    def continuation_ids(self, prefix: str, continuation: str) -> tuple[list[int], list[int]]:
        return self._continuation_ids(prefix, continuation)

    def _kl_rows(self, reference: "HFBackend", prefix_ids: list[int], ids: list[int]) -> list[float]:
        lp_m = self.engine.full_logprobs(prefix_ids, ids)
        lp_r = reference.engine.full_logprobs(prefix_ids, ids)
        return (lp_m.exp() * (lp_m - lp_r)).sum(-1).tolist()

    async def kl_per_position(self, reference: Backend, prefix_ids: list[int], ids: list[int]) -> list[float]:
        if not isinstance(reference, HFBackend):
            raise InvalidInput(f"{reference.ref} gives no whole distributions to compare with {self.ref}")
        return await self._model_thread.call(partial(self._kl_rows, reference, prefix_ids, ids))
