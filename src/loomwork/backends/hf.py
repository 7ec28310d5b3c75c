"""Local transformers models on torch (CPU by default).

Generation prefills the prefix once, copies its KV cache to the n samples and decodes them as one batch (the
nanochat engine's shape), dropping finished samples from the batch. Per-token logprobs are the raw model
log-softmax, so they equal a teacher-forced pass over the same tokens.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import re
import threading
from typing import AsyncIterator, Callable

from ..errors import InvalidInput
from ..tree import Token
from .base import Backend, Capabilities, Done, SamplingParams, Samples, TokenEvent, check_length, merged_token
from .hf_load import load, require_torch
from .kv_cache import PrefixCache, budget_from_env
from .model_lock import ModelLock
from .threaded import stream_from_thread


SCORE_CHUNK = 128  # tokens per forward pass when scoring in the background (logits: 128 × vocab floats)
_CONTROL_NAME = re.compile(r"^(<(start|end)_of_\w+>|\[multimodal\])$")


def _starts(cache) -> list[int]:
    """For each layer of a cache, the position its stored keys start at: 0, or for a sliding-window layer the
    first key it still holds."""
    return [layer.cumulative_length - layer.keys.shape[-2] if getattr(layer, "is_sliding", False) else 0
            for layer in cache.layers]


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
        self.held: list[tuple[int, float, tuple]] = []

    def push(self, token_id: int, logprob: float, top: tuple) -> Token | None:
        self.ids.append(token_id)
        self.held.append((token_id, logprob, top))
        text = self.tok.decode(self.ctx + self.ids, skip_special_tokens=False)[len(self.base):]
        if text.endswith("\ufffd") and len(self.held) < 4:
            return None
        piece = text[self.emitted:]
        self.emitted = len(text)
        out, self.held = merged_token(piece, self.held), []
        return out


class HFBackend(Backend):
    name = "hf"
    capabilities = Capabilities(streaming=True, logprobs=True, scoring=True, next_token=True)

    def __init__(self, model: str, *, lm=None, tokenizer=None, kv_budget: int | str | None = None,
                 prefix_cache: bool = True):
        super().__init__(model)
        self.torch = require_torch()
        # the budget is checked before the (slow) load, so a bad LOOMWORK_KV_BUDGET fails at once
        self.kv = PrefixCache(kv_budget if kv_budget is not None else budget_from_env()) if prefix_cache else None
        self.variant: tuple = ()  # what changes the forward pass (steering, adapters): part of the cache's key
        if lm is None:
            lm, tokenizer = load(model)
        self.lm, self.tok = lm, tokenizer
        self.window = getattr(lm.config, "max_position_embeddings", None)
        self._lock = ModelLock()  # one forward pass at a time; people's requests before background scoring
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
        self._banned = self.torch.tensor(banned, dtype=self.torch.long) if banned else None
        self._anchor = tokenizer.encode("a", add_special_tokens=False)[-1:]
        self._pieces: dict[int, str] = {}

    # -- helpers -----------------------------------------------------------------------------------------------

    def _check_length(self, n_tokens: int, more: int = 0) -> None:
        check_length(self.ref, n_tokens, more, self.window)

    def _new_state(self, ids: list[int], limit: int):
        """A cache for the model holding the longest prefix of ``ids[:limit]`` the prefix cache has, and its length.

        Sliding-window layers record every key they are given (transformers' past recording) so that the state can
        be stored whole; they start from the last window - 1 keys of the prefix, all the attention needs."""
        from transformers import DynamicCache

        cache = DynamicCache(config=self.lm.config)
        for layer in cache.layers:
            if getattr(layer, "is_sliding", False):
                layer.activate_past_recording()
        done = 0
        if self.kv is not None:
            done, layers = self.kv.match(ids, limit=limit, variant=self.variant)
            for layer, (k, v) in zip(cache.layers, layers):
                if getattr(layer, "is_sliding", False):
                    keep = max(0, done - layer.sliding_window + 1)
                    layer.update(k[:, :, keep:], v[:, :, keep:])
                    layer.cumulative_length = done  # positions count from the start of the text
                else:
                    layer.update(k, v)
        return cache, done

    def _keep_state(self, ids: list[int], cache, done: int) -> None:
        """Store the state of ``ids`` in the prefix cache, then let sliding layers drop what their window no longer
        sees (decoding n rows from a long path then copies 511 keys a step on those layers, not the whole path).
        They go on recording what is decoded after it, so each sample's state can be stored too (_keep_row)."""
        if self.kv is not None:
            self.kv.computed(len(ids) - done)
            self.kv.insert(ids, [(layer.keys, layer.values) for layer in cache.layers], variant=self.variant,
                           starts=_starts(cache))
        for layer in cache.layers:
            if getattr(layer, "is_sliding", False):
                layer.crop(0)

    def _prefill(self, ids: list[int], first: int):
        """The model's state after ``ids`` and its logits at positions ``first`` … ``len(ids) - 1``. The longest
        prefix the cache holds (at most ``first`` tokens, so those logits are computed) is not computed again; the
        state of ``ids`` is cached for the next call. Call with the model lock held."""
        cache, done = self._new_state(ids, first)
        out = self.lm(input_ids=self.torch.tensor([ids[done:]]), past_key_values=cache, use_cache=True,
                      logits_to_keep=len(ids) - first)
        self._keep_state(ids, cache, done)
        return cache, out.logits[0].float()

    def cache_stats(self) -> dict | None:
        """The prefix cache's figures (entries, tokens, bytes, peak, hits, misses), or None when it is off."""
        return None if self.kv is None else self.kv.stats()

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
        vals, idx = logprobs.topk(k, dim=-1)
        return [tuple((self.piece(i), v) for v, i in zip(vr, ir)) for vr, ir in zip(vals.tolist(), idx.tolist())]

    def _sample(self, logprobs, params: SamplingParams, gen):
        if params.temperature == 0:
            greedy = logprobs if self._banned is None else logprobs.index_fill(-1, self._banned, float("-inf"))
            return greedy.argmax(-1)
        # every step below makes a new tensor (logprobs are recorded as they are); full-vocabulary passes are the
        # cost of sampling with a 262k vocabulary, so there are as few as the settings need
        scores = logprobs / params.temperature if params.temperature != 1.0 else logprobs
        if self._banned is not None:
            scores = scores.index_fill(-1, self._banned, float("-inf"))
        if params.top_k:
            kth = scores.topk(min(params.top_k, scores.shape[-1]), dim=-1).values[:, -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if params.top_p < 1.0:
            sorted_scores, order = scores.sort(dim=-1, descending=True)
            cum = sorted_scores.softmax(-1).cumsum(-1)
            drop = (cum - sorted_scores.softmax(-1)) >= params.top_p  # keep the smallest set reaching top_p
            scores = scores.scatter(-1, order, sorted_scores.masked_fill(drop, float("-inf")))
        if params.min_p > 0:
            probs = scores.softmax(-1)
            floor = probs.max(-1, keepdim=True).values * params.min_p
            scores = scores.masked_fill(probs < floor, float("-inf"))
        return self._draw(scores.softmax(-1), gen)

    def _draw(self, probs, gen):
        """One token per row by inverse CDF (cumulative sum in float64, a uniform draw, a binary search): exact
        sampling, ~3 ms for 8 rows of Gemma's 262k vocabulary where torch.multinomial takes ~34 ms (it draws an
        exponential number for every entry)."""
        torch = self.torch
        cdf = probs.double().cumsum(-1)
        u = torch.rand(probs.shape[0], 1, generator=gen, dtype=torch.float64) * cdf[:, -1:]
        return torch.searchsorted(cdf, u, right=True).clamp_(max=probs.shape[-1] - 1)[:, 0]

    def _keep_row(self, ids: list[int], fed: list[int], cache, r: int) -> None:
        """Store sample row ``r``'s state (its path and the tokens it was fed) in the prefix cache, so that
        continuing from the child it becomes starts warm (sliding layers recorded the tokens it generated)."""
        if self.kv is None or not fed:
            return
        self.kv.insert(ids + fed, [(layer.keys[r : r + 1], layer.values[r : r + 1]) for layer in cache.layers],
                       variant=self.variant, starts=_starts(cache))

    # -- generation (runs in a worker thread) ------------------------------------------------------------------

    def _generate(self, prefix: str, params: SamplingParams, emit: Callable, stop_flag: threading.Event) -> Done:
        torch = self.torch
        ids = self.encode(prefix)
        self._check_length(len(ids), params.max_tokens)
        n = params.n
        gen = torch.Generator().manual_seed(params.seed if params.seed is not None else 0)
        detoks = [_Detok(self.tok, ids[-4:]) for _ in range(n)]
        samples = Samples(n, params.stop, emit)
        used = 0
        with self._lock.urgent(), torch.inference_mode():
            cache, last = self._prefill(ids, len(ids) - 1)
            logits = last[-1:].expand(n, -1)
            cache.batch_repeat_interleave(n)
            rows = list(range(n))  # sample index of each batch row
            row_ids: list[list[int]] = [[] for _ in range(n)]  # the tokens each sample fed to the model
            for _step in range(params.max_tokens):
                if stop_flag.is_set():
                    break
                logprobs = torch.log_softmax(logits, dim=-1)
                chosen = self._sample(logprobs, params, gen)
                picked = logprobs.gather(-1, chosen[:, None])[:, 0].tolist()
                tops = self._tops(logprobs, params.logprobs)
                keep = []
                for r, i in enumerate(rows):
                    tid = int(chosen[r])
                    used += 1
                    if tid in self.eos_ids:
                        samples.ended(i)
                    elif samples.push(i, detoks[i].push(tid, picked[r], tops[r])):
                        keep.append(r)
                for r in range(len(rows)):
                    if r not in keep:  # a finished sample leaves the batch: its state goes to the prefix cache
                        self._keep_row(ids, row_ids[rows[r]], cache, r)
                if not keep:
                    rows = []
                    break
                if len(keep) < len(rows):
                    cache.batch_select_indices(torch.tensor(keep))
                    chosen = chosen[keep]
                    rows = [rows[r] for r in keep]
                if _step + 1 == params.max_tokens:
                    break
                out = self.lm(input_ids=chosen[:, None], past_key_values=cache, use_cache=True)
                logits = out.logits[:, -1, :].float()
                for r, i in enumerate(rows):
                    row_ids[i].append(int(chosen[r]))
            for r, i in enumerate(rows):  # the samples still running when the generation ended
                self._keep_row(ids, row_ids[i], cache, r)
        return samples.done(len(ids), used)

    def stream(self, prefix: str, params: SamplingParams) -> AsyncIterator[TokenEvent | Done]:
        return stream_from_thread(lambda emit, stop: self._generate(prefix, params, emit, stop), "loomwork-hf-generate")

    # -- scoring -----------------------------------------------------------------------------------------------

    def _continuation_ids(self, prefix: str, continuation: str) -> tuple[list[int], list[int]]:
        pre = self.encode(prefix)
        full = self.encode(prefix + continuation)
        if full[: len(pre)] == pre:
            return pre, full[len(pre):]  # the tokenisation the model sees when it reads the whole text
        return pre, self.tok.encode(continuation, add_special_tokens=False)

    def _score(self, prefix: str, continuation: str, top: int) -> list[Token]:
        torch = self.torch
        pre, cont = self._continuation_ids(prefix, continuation)
        if not cont:
            return []
        self._check_length(len(pre) + len(cont))
        with self._lock.urgent(), torch.inference_mode():
            logits = self._prefill(pre + cont, len(pre) - 1)[1][:-1]
        logprobs = torch.log_softmax(logits, dim=-1)
        detok = _Detok(self.tok, pre[-4:])
        out = []
        for pos, tid in enumerate(cont):
            t = detok.push(tid, float(logprobs[pos, tid]), self._top(logprobs[pos], top))
            if t is not None:
                out.append(t)
        return out

    async def score(self, prefix: str, continuation: str, top: int = 5) -> list[Token]:
        return await asyncio.to_thread(self._score, prefix, continuation, top)

    def _score_segments(self, segments: list[str], wanted: list[int], cancel) -> dict[int, list[Token]]:
        """One pass over the whole text, tokenised as a whole (how the model reads it), in chunks of SCORE_CHUNK
        tokens with the KV cache carried over, at background priority: a generation waits at most one chunk.
        Each token counts for the segment its first character is in (a token that spans a join between two
        segments counts for the first of them)."""
        torch = self.torch
        text = "".join(segments)
        enc = self.tok(text, add_special_tokens=True, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        bounds = [0]
        for seg in segments:
            bounds.append(bounds[-1] + len(seg))
        self._check_length(len(ids))
        lps: list[float] = [0.0] * len(ids)
        # the first token that counts: nothing before the one before it needs logits, so a cached state serves
        wanted_set = set(wanted)
        first = next((j for j in range(1, len(ids)) if bisect.bisect_right(bounds, offsets[j][0]) - 1 in wanted_set), len(ids))
        with self._lock.background(cancel) as lock, torch.inference_mode():
            cache, done = self._new_state(ids, first - 1)
            last = None
            for start in range(done, len(ids), SCORE_CHUNK):
                chunk = ids[start : start + SCORE_CHUNK]
                out = self.lm(input_ids=torch.tensor([chunk]), past_key_values=cache, use_cache=True)
                cache = out.past_key_values
                logits = out.logits[0].float()
                if last is not None:
                    lps[start] = float(last[chunk[0]] - torch.logsumexp(last, -1))
                if len(chunk) > 1:  # log-softmax of the token that came next, without a second vocab-wide tensor
                    nxt = torch.tensor(chunk[1:])[:, None]
                    picked = logits[:-1].gather(-1, nxt)[:, 0] - torch.logsumexp(logits[:-1], -1)
                    lps[start + 1 : start + len(chunk)] = picked.tolist()
                last = logits[-1]
                lock.pause_if_wanted(cancel)
            self._keep_state(ids, cache, done)  # the path just read is what the next expansion will read first
        out_tokens: dict[int, list[Token]] = {i: [] for i in wanted}
        for j in range(1, len(ids)):  # position 0 is the start token: nothing predicts it
            first_char = offsets[j][0]
            seg = bisect.bisect_right(bounds, first_char) - 1
            if seg in out_tokens and offsets[j][1] > offsets[j][0]:
                out_tokens[seg].append(Token(text[offsets[j][0]:offsets[j][1]], lps[j], id=ids[j]))
        return out_tokens

    async def score_segments(self, segments: list[str], wanted: list[int], cancel=None) -> dict[int, list[Token]]:
        return await asyncio.to_thread(self._score_segments, segments, wanted, cancel)

    def _rows_logprobs(self, pre: list[int], rows: list[list[int]], after: list[int] = (),
                       batch: int = 64) -> list[tuple[list[float], list[float]]]:
        """For each row of token ids after ``pre``: the logprob of each of its tokens, and the logprobs of the
        tokens ``after`` right after the row. The prefix runs once; its KV cache is copied to each batch of rows.
        Right padding is harmless: no real token attends to the padding after it."""
        import copy

        torch = self.torch
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else min(self.eos_ids)
        out_rows = []
        self._check_length(len(pre) + max((len(r) for r in rows), default=0))
        with self._lock.urgent(), torch.inference_mode():
            state, last = self._prefill(pre, len(pre) - 1)
            first = torch.log_softmax(last[-1], -1)
            for start in range(0, len(rows), batch):
                chunk = rows[start : start + batch]
                width = max(len(r) for r in chunk)
                ids = torch.tensor([r + [pad] * (width - len(r)) for r in chunk])
                cache = copy.deepcopy(state)
                cache.batch_repeat_interleave(len(chunk))
                lp = torch.log_softmax(self.lm(input_ids=ids, past_key_values=cache, use_cache=True).logits.float(), -1)
                for b, r in enumerate(chunk):
                    toks = [float(first[r[0]])] + [float(lp[b, j - 1, r[j]]) for j in range(1, len(r))]
                    out_rows.append((toks, [float(lp[b, len(r) - 1, a]) for a in after]))
        return out_rows

    def _score_many(self, prefix: str, continuations: list[str], eos: bool) -> list[float]:
        pre = self.encode(prefix)
        rows = [self._continuation_ids(prefix, c)[1] for c in continuations]
        if any(not r for r in rows):
            raise InvalidInput(f"the answer {next(c for c, r in zip(continuations, rows) if not r)!r} tokenises to nothing")
        scored = self._rows_logprobs(pre, rows, [min(self.eos_ids)] if eos else [])
        return [sum(toks) + sum(ends) for toks, ends in scored]

    async def score_many(self, prefix: str, continuations: list[str], eos: bool = False) -> list[float]:
        return await asyncio.to_thread(self._score_many, prefix, continuations, eos)

    def _score_answers(self, prefix: str, answers: list[str], terminators: list[str]) -> list[list[float]]:
        """One row per answer: a terminator that is a single token right after the answer (the usual case) is read
        off the distribution after it, instead of scoring the answer again for every terminator."""
        pre = self.encode(prefix)
        rows = [self._continuation_ids(prefix, a)[1] for a in answers]
        if any(not r for r in rows):
            raise InvalidInput(f"the answer {next(a for a, r in zip(answers, rows) if not r)!r} tokenises to nothing")
        # which single token each terminator is, right after each answer (None: it is not one token there)
        term_ids: list[list[int | None]] = []
        for answer, row in zip(answers, rows):
            ids = []
            for term in terminators:
                if term == "<eos>":
                    ids.append(min(self.eos_ids))
                    continue
                full = self._continuation_ids(prefix, answer + term)[1]
                ids.append(full[-1] if len(full) == len(row) + 1 and full[: len(row)] == row else None)
            term_ids.append(ids)
        wanted = sorted({i for ids in term_ids for i in ids if i is not None})
        scored = self._rows_logprobs(pre, rows, wanted)
        col = {tid: c for c, tid in enumerate(wanted)}
        result = [[0.0] * len(terminators) for _ in answers]
        slow: list[tuple[int, int]] = []
        for ai, (toks, ends) in enumerate(scored):
            for ti, tid in enumerate(term_ids[ai]):
                if tid is None:
                    slow.append((ai, ti))
                else:
                    result[ai][ti] = sum(toks) + ends[col[tid]]
        if slow:  # the terminator merged with the answer's last token, or is several tokens: score it whole
            totals = self._score_many(prefix, [answers[ai] + terminators[ti] for ai, ti in slow], False)
            for (ai, ti), total in zip(slow, totals):
                result[ai][ti] = total
        return result

    async def score_answers(self, prefix: str, answers: list[str], terminators: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self._score_answers, prefix, answers, terminators)

    def _next_token(self, prefix: str, k: int) -> list[tuple[str, float]]:
        torch = self.torch
        ids = self.encode(prefix)
        self._check_length(len(ids))
        with self._lock.urgent(), torch.inference_mode():
            logits = self._prefill(ids, len(ids) - 1)[1][-1]
        return list(self._top(torch.log_softmax(logits, dim=-1), k))

    async def next_token(self, prefix: str, k: int = 20) -> list[tuple[str, float]]:
        return await asyncio.to_thread(self._next_token, prefix, k)

    def _entropy(self, prefix: str) -> float:
        torch = self.torch
        ids = self.encode(prefix)
        self._check_length(len(ids))
        with self._lock.urgent(), torch.inference_mode():
            logits = self._prefill(ids, len(ids) - 1)[1][-1].double()
        lp = torch.log_softmax(logits, -1)
        return float(-(lp.exp() * lp).sum()) / math.log(2)

    async def entropy(self, prefix: str) -> float | None:
        return await asyncio.to_thread(self._entropy, prefix)
