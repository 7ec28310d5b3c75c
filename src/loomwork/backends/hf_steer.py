"""Activation steering with a transformers model (mixed into HFBackend).

A steering vector is added to the residual stream: the output of one decoder block, at chosen positions and batch
rows. Generation runs each steered sample beside an unsteered "shadow" row fed the same tokens, so that every step
has both next-token distributions: the logprob the unsteered model gives each sampled token and KL(steered ‖
unsteered) come out exactly, for one batch twice as tall (docs/metrics.md, "Steering").
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager

from ..errors import InvalidInput


class HFSteering:
    """Needs from the backend: torch, lm, ref, encode, _model_thread, _new_state, _read, _keep_state."""

    def layers(self):
        """The decoder blocks, in order."""
        return getattr(self.lm, "model", self.lm).layers

    def hidden_size(self) -> int:
        return int(self.lm.get_input_embeddings().weight.shape[1])

    def check_steer(self, steer) -> None:
        """Refuse vectors this model cannot take: a layer out of range, a width that is not its hidden size."""
        n, width = len(self.layers()), self.hidden_size()
        for s in steer:
            if s.layer is None or s.vector is None:
                raise InvalidInput(f"steering vector {s.name!r} was not resolved (use it through an expansion)")
            if not 0 <= s.layer < n:
                raise InvalidInput(f"steering vector {s.name!r} is for layer {s.layer}, but {self.ref} has layers "
                                   f"0..{n - 1}")
            if len(s.vector) != width:
                raise InvalidInput(f"steering vector {s.name!r} has {len(s.vector)} numbers, but {self.ref}'s "
                                   f"residual stream has {width}")

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
            delta = torch.tensor(s.vector, dtype=torch.float32) * s.coef
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

    def _activations(self, texts: list[str], layer: int) -> list[list[float]]:
        """Each text's mean activation at the output of block ``layer``, over its tokens (the start token left out:
        its activation is the same for every text and very large in Gemma)."""
        torch = self.torch
        if not 0 <= layer < len(self.layers()):
            raise InvalidInput(f"layer {layer} is out of range: {self.ref} has layers 0..{len(self.layers()) - 1}")
        out = []
        seen = {}
        handle = self.layers()[layer].register_forward_hook(
            lambda _m, _i, o: seen.__setitem__("h", o if isinstance(o, torch.Tensor) else o[0]))
        try:
            with self._model_thread.urgent(), torch.inference_mode():
                for text in texts:
                    ids = self.encode(text)
                    first = 1 if len(ids) > 1 and ids[0] == self.tok.bos_token_id else 0
                    self.lm(input_ids=torch.tensor([ids]))
                    out.append(seen["h"][0, first:].double().mean(0).tolist())
        finally:
            handle.remove()
        return out

    def _steered_start(self, ids: list[int], n: int, steer, steer_prompt: bool, scale=None):
        """The cache for n steered rows then n unsteered ones after ``ids``, and the logits of their first step.
        The prompt's last token is read in the batch (steered in the first n rows): its output predicts the first
        new token. Before it, the prompt is read unsteered (from the prefix cache), or steered too with
        ``steer_prompt`` (cached under its own key)."""
        torch = self.torch
        head = ids[:-1]

        def state(variant, hook):
            cache, done = self._new_state(head, len(head), variant)
            if len(head) > done:
                with hook:
                    self._read(head[done:], cache, 0)
                self._keep_state(head, cache, done, variant)
            return cache

        from contextlib import nullcontext

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
            out = self.lm(input_ids=torch.tensor([[ids[-1]]] * (2 * n)), past_key_values=cache, use_cache=True)
        return cache, out.logits[:, -1, :].float()
