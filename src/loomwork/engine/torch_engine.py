"""The torch engine: token ids in, logits out, for one transformers model (nanochat's engine discipline). It knows
no text: the model layer (backends/hf.py, hf_score.py) tokenises, detokenises, applies stop sequences and records
tokens; this holds the model, its states and the ways to read text into them:

- states of token prefixes, kept in the radix prefix cache (kv_cache.py) within its budget: ``new_state`` starts
  from the longest cached prefix, ``read`` feeds ids in chunks, ``prefill`` does both and keeps the result;
- a state forked to n rows (``fork``), rows dropped (``select``), one decoding step for every row (``step``), a
  finished row's state kept for the next expansion (``keep_row``);
- steering: vectors added to the residual stream at a block's output, for some rows (``steered``), and the
  start of a steered batch beside its unsteered twins (``steered_start``); activations for making vectors;
- every call runs on the process's model thread (model_thread.py says why); on the CPU the weights' products run
  packed for oneDNN (packed_linear.py).
"""

from __future__ import annotations

import hashlib
import inspect
import threading
from contextlib import contextmanager, nullcontext

from ..errors import Cancelled
from . import packed_linear
from .kv_cache import PrefixCache
from .model_thread import shared as shared_model_thread

PREFILL_CHUNK = 512  # tokens per forward pass when reading a text (read says why)


def float32_head(lm) -> bool:
    """Give a model whose weights are not float32 an output projection in float32 (a float32 copy of its weight,
    its input cast up): logits, and everything computed from them, in float32 whatever the body's precision.
    Returns whether it changed anything."""
    import torch

    head = lm.get_output_embeddings()
    if head is None or head.weight.dtype == torch.float32:
        return False

    class Float32Head(torch.nn.Module):
        def __init__(self, head):
            super().__init__()
            self.weight = torch.nn.Parameter(head.weight.detach().float(), requires_grad=False)
            bias = getattr(head, "bias", None)
            self.bias = None if bias is None else torch.nn.Parameter(bias.detach().float(), requires_grad=False)

        def forward(self, hidden):
            return torch.nn.functional.linear(hidden.float(), self.weight, self.bias)

    lm.set_output_embeddings(Float32Head(head))
    return True


def _starts(cache) -> list[int]:
    """For each layer of a cache, the position its stored keys start at: 0, or for a sliding-window layer the
    first key it still holds."""
    return [layer.cumulative_length - layer.keys.shape[-2] if getattr(layer, "is_sliding", False) else 0
            for layer in cache.layers]


class TorchEngine:
    def __init__(self, lm, *, kv: PrefixCache | None = None):
        """``kv``: the prefix cache (its budget checked by whoever made it, before the model loaded), or None."""
        import torch

        self.torch = torch
        self.kv = kv
        self.variant: tuple = ()  # what changes the forward pass (steering, adapters): part of the cache's key
        self.thread = shared_model_thread()
        self.lm = lm
        self.device = next(lm.parameters()).device  # where the weights are, so every tensor made for them too
        self.dtype = str(next(lm.parameters()).dtype).removeprefix("torch.")  # the body's weights
        float32_head(lm)
        # transformers 5.25 takes the cache as `cache` (and warns about `past_key_values` at every step); earlier 5.x
        # releases as `past_key_values`
        self._cache_arg = "cache" if "cache" in inspect.signature(lm.forward).parameters else "past_key_values"
        # products on weights packed once for oneDNN (packed_linear.py: 2-4x faster on this CPU)
        self.thread.run(lambda: packed_linear.install(lm, pack_now=True))
        self.window = getattr(lm.config, "max_position_embeddings", None)

    def tensor(self, data, dtype=None):
        """Token ids (a list, or a list of rows), or other numbers with ``dtype``, as a tensor where the model runs."""
        return self.torch.tensor(data, dtype=dtype, device=self.device)

    def generator(self, seed: int):
        """A seeded random generator on the model's device (samples are repeatable from their seed)."""
        return self.torch.Generator(device=self.device).manual_seed(seed)

    # -- states of prefixes ------------------------------------------------------------------------------------

    def new_state(self, ids: list[int], limit: int, variant: tuple = ()):
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
            done, layers = self.kv.match(ids, limit=limit, variant=self.variant + variant)
            for layer, (k, v) in zip(cache.layers, layers):
                if getattr(layer, "is_sliding", False):
                    keep = max(0, done - layer.sliding_window + 1)
                    layer.update(k[:, :, keep:], v[:, :, keep:])
                    layer.cumulative_length = done  # positions count from the start of the text
                else:
                    layer.update(k, v)
        return cache, done

    def keep_state(self, ids: list[int], cache, done: int, variant: tuple = ()) -> None:
        """Store the state of ``ids`` in the prefix cache, then let sliding layers drop what their window no longer
        sees (decoding n rows from a long path then copies 511 keys a step on those layers, not the whole path).
        They go on recording what is decoded after it, so each sample's state can be stored too (keep_row)."""
        if self.kv is not None:
            self.kv.computed(len(ids) - done)
            self.kv.insert(ids, [(layer.keys, layer.values) for layer in cache.layers],
                           variant=self.variant + variant, starts=_starts(cache))
        for layer in cache.layers:
            if getattr(layer, "is_sliding", False):
                layer.crop(0)

    def read(self, ids: list[int], cache, keep: int, stop: threading.Event | None = None):
        """Feed ``ids`` into ``cache`` in chunks of PREFILL_CHUNK tokens; the logits of its last ``keep`` positions.

        In one pass, every query of a long text would go through attention over the whole text with a mask, on
        the sliding-window layers too; in chunks those attend to at most window - 1 + chunk keys (a 5,521-token
        path of the demo loom: 18.6 s in one pass, 6.9 s in chunks of 512; logprobs equal to 3e-5). ``stop``
        set (the reader left): Cancelled before the next chunk, the state not kept."""
        torch = self.torch
        parts = []
        for start in range(0, len(ids), PREFILL_CHUNK):
            if stop is not None and stop.is_set():
                raise Cancelled("cancelled")
            chunk = ids[start : start + PREFILL_CHUNK]
            want = start + len(chunk) - max(len(ids) - keep, start)  # positions of this chunk whose logits are kept
            out = self.lm(input_ids=self.tensor([chunk]), **self.with_cache(cache),
                          logits_to_keep=max(want, 1))  # (0 would mean all of them)
            if want > 0:
                parts.append(out.logits[0, -want:].float())
        return torch.cat(parts) if len(parts) > 1 else parts[0] if parts else None

    def prefill(self, ids: list[int], first: int, stop: threading.Event | None = None):
        """The model's state after ``ids`` and its logits at positions ``first`` … ``len(ids) - 1``. The longest
        prefix the cache holds (at most ``first`` tokens, so those logits are computed) is not computed again; the
        state of ``ids`` is cached for the next call. Call on the model thread."""
        cache, done = self.new_state(ids, first)
        logits = self.read(ids[done:], cache, len(ids) - first, stop)
        self.keep_state(ids, cache, done)
        return cache, logits

    def keep_row(self, ids: list[int], fed: list[int], cache, r: int, variant: tuple | None = ()) -> None:
        """Store sample row ``r``'s state (its path and the tokens it was fed) in the prefix cache, so that
        continuing from the child it becomes starts warm (sliding layers recorded the tokens it generated).
        ``variant`` None: a state no fresh computation would give (steered new tokens after an unsteered prompt)."""
        if self.kv is None or not fed or variant is None:
            return
        self.kv.insert(ids + fed, [(layer.keys[r : r + 1], layer.values[r : r + 1]) for layer in cache.layers],
                       variant=self.variant + variant, starts=_starts(cache))

    def cache_stats(self) -> dict | None:
        return None if self.kv is None else self.kv.stats()

    # -- batches of rows ---------------------------------------------------------------------------------------

    @staticmethod
    def fork(cache, n: int) -> None:
        """One state becomes n rows (the samples of an expansion share the prefix's computation)."""
        cache.batch_repeat_interleave(n)

    def select(self, cache, rows: list[int]) -> None:
        """Keep only these rows of a batch (finished samples leave it)."""
        cache.batch_select_indices(self.tensor(rows))

    def step(self, feed, cache):
        """One decoding step: ``feed`` (a token id per row) read into ``cache``; the next logits of every row."""
        out = self.lm(input_ids=feed[:, None], **self.with_cache(cache))
        return out.logits[:, -1, :].float()

    def forward(self, rows, cache=None, logits_to_keep=None):
        """Token id rows read after ``cache`` (None: from nothing); the model's output (``logits``; ``cache``, which
        it extends in place)."""
        kwargs = {} if logits_to_keep is None else {"logits_to_keep": logits_to_keep}
        if cache is None:
            return self.lm(input_ids=self.tensor(rows), **kwargs)
        return self.lm(input_ids=self.tensor(rows), **self.with_cache(cache), **kwargs)

    def with_cache(self, cache) -> dict:
        """The keyword arguments that hand the model a cache to read and extend."""
        return {self._cache_arg: cache, "use_cache": True}

    def full_logprobs(self, prefix_ids: list[int], ids: list[int]):
        """log-softmax over the vocabulary at each position of ``ids`` after ``prefix_ids`` (teacher-forced)."""
        torch = self.torch
        with self.thread.urgent(), torch.inference_mode():
            logits = self.forward([prefix_ids + ids]).logits[0].float()
        return torch.log_softmax(logits[len(prefix_ids) - 1 : -1], -1)

    # -- steering ----------------------------------------------------------------------------------------------

    def layers(self):
        """The decoder blocks, in order."""
        return getattr(self.lm, "model", self.lm).layers

    def hidden_size(self) -> int:
        return int(self.lm.get_input_embeddings().weight.shape[1])

    @staticmethod
    def steer_key(steer) -> tuple:
        """What steering did to a state, for the prefix cache's key: each vector's layer, coefficient and numbers."""
        return tuple(("steer", s.layer, s.coef, hashlib.sha1(repr(s.vector).encode()).hexdigest()) for s in steer)

    @contextmanager
    def steered(self, steer, rows=None, scale=None):
        """Add Σ coef × vector to the output of each vector's block, for the first ``rows()`` batch rows (every row
        when ``rows`` is None), each row's times ``scale()[row]`` when given (a sweep: one coefficient a row),
        while the block is inside. The hooks are removed on the way out, error or not."""
        torch = self.torch
        by_layer: dict[int, object] = {}
        for s in steer:
            delta = self.tensor(s.vector, dtype=torch.float32) * s.coef
            by_layer[s.layer] = by_layer[s.layer] + delta if s.layer in by_layer else delta

        def hook_for(delta):
            def hook(_module, _inputs, output):
                hidden = output if isinstance(output, torch.Tensor) else output[0]
                k = hidden.shape[0] if rows is None else rows()
                if k:
                    hidden = hidden.clone()
                    add = delta.to(hidden.dtype)
                    if scale is None:
                        hidden[:k] += add
                    else:  # one coefficient a row, over every position of the row
                        hidden[:k] += scale()[:k].to(hidden.dtype).view(-1, *([1] * (hidden.dim() - 1))) * add
                return hidden if isinstance(output, torch.Tensor) else (hidden, *output[1:])
            return hook

        layers = self.layers()
        handles = [layers[layer].register_forward_hook(hook_for(delta)) for layer, delta in by_layer.items()]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def steered_start(self, ids: list[int], n: int, steer, steer_prompt: bool, scale=None):
        """The cache for n steered rows then n unsteered ones after ``ids``, and the logits of their first step.
        The prompt's last token is read in the batch (steered in the first n rows): its output predicts the first
        new token. Before it, the prompt is read unsteered (from the prefix cache), or steered too with
        ``steer_prompt`` (cached under its own key)."""
        torch = self.torch
        head = ids[:-1]

        def state(variant, hook):
            cache, done = self.new_state(head, len(head), variant)
            if len(head) > done:
                with hook:
                    self.read(head[done:], cache, 0)
                self.keep_state(head, cache, done, variant)
            return cache

        cache = state((), nullcontext())
        if steer_prompt:
            steered = state(self.steer_key(steer), self.steered(steer))
            steered.batch_repeat_interleave(n)
            cache.batch_repeat_interleave(n)
            for mine, theirs in zip(steered.layers, cache.layers):
                if mine.keys is not None and theirs.keys is not None and mine.keys.numel():
                    mine.keys = torch.cat([mine.keys, theirs.keys])
                    mine.values = torch.cat([mine.values, theirs.values])
            cache = steered
        else:
            cache.batch_repeat_interleave(2 * n)
        with self.steered(steer, lambda: n, scale):
            out = self.forward([[ids[-1]]] * (2 * n), cache)
        return cache, out.logits[:, -1, :].float()

    def activations(self, rows: list[list[int]], layer: int, first: list[int]) -> list[list[float]]:
        """Each row's mean activation at the output of block ``layer``, from position ``first[i]`` on."""
        torch = self.torch
        out = []
        seen = {}
        handle = self.layers()[layer].register_forward_hook(
            lambda _m, _i, o: seen.__setitem__("h", o if isinstance(o, torch.Tensor) else o[0]))
        try:
            with self.thread.urgent(), torch.inference_mode():
                for ids, start in zip(rows, first):
                    self.forward([ids])
                    out.append(seen["h"][0, start:].double().mean(0).tolist())
        finally:
            handle.remove()
        return out
