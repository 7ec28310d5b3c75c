"""Activation steering with a transformers model, at the text level (mixed into HFBackend): which vectors a model
can take, and texts' activations for making vectors. The engine adds the vectors to the residual stream (the output
of one decoder block, at chosen positions and batch rows) and runs each steered sample beside an unsteered twin row
fed the same tokens, so that every step has both next-token distributions: the logprob the unsteered model gives
each sampled token and KL(steered ‖ unsteered) come out exactly (docs/metrics.md, "Steering").
"""

from __future__ import annotations

from functools import partial

from ..errors import InvalidInput
from .base import check_vectors


class HFSteering:
    """Needs from the backend: engine (engine/torch_engine.py: the hooks, the twin rows), ref, encode, tok,
    _model_thread."""

    def layers(self):
        """The decoder blocks, in order."""
        return self.engine.layers()

    def steered(self, steer, rows=None, scale=None):
        """The engine's steering hooks (engine/torch_engine.py), for a block of code."""
        return self.engine.steered(steer, rows, scale)

    def check_steer(self, steer) -> None:
        """Refuse vectors this model cannot take: a layer out of range, a width that is not its hidden size."""
        check_vectors(self.ref, steer, range(len(self.engine.layers())), self.engine.hidden_size())

    def _activations(self, texts: list[str], layer: int) -> list[list[float]]:
        """Each text's mean activation at the output of block ``layer``, over its tokens from the second on (the
        first position is an attention sink with a huge activation, start token or not)."""
        if not 0 <= layer < len(self.engine.layers()):
            raise InvalidInput(f"layer {layer} is out of range: {self.ref} has layers 0..{len(self.engine.layers()) - 1}")
        rows = [self.encode(text) for text in texts]
        # position 0 is left out wherever a text has more: a start token there (Gemma) or, in a model without one
        # (SmolLM2), the first word, which is the attention sink; either way its activation is huge and swamps the
        # difference (SmolLM2, "Love"/"Hate" at layer 12 with it: a vector of norm 11,037)
        first = [1 if len(ids) > 1 else 0 for ids in rows]
        return self.engine.activations(rows, layer, first)

    def _logit_lens(self, prefix: str, token_ids: list[int], index: int, k: int, steer=(),
                    steer_prompt: bool = False) -> dict:
        """What each block predicted for token ``index`` of a continuation (ids ``token_ids``) of ``prefix``: the
        block's top k (text, logprob), the token's logprob and rank there, and the first block from which it stays
        the top prediction."""
        from ..engine.logit_lens import logit_lens

        head = self.encode(prefix)
        ids = head + list(token_ids[: index + 1])
        # as generation steered: from the prompt's last token on (every position with steer_prompt)
        lens, final = logit_lens(self.engine, ids, len(ids) - 2, steer, 0 if steer_prompt else len(head) - 1)
        target = token_ids[index]
        top_lp, top_id = lens.topk(k, -1)
        ranks = (lens > lens[:, target : target + 1]).sum(-1)
        layers = [{"layer": i, "top": [(self.piece(int(t)), float(lp)) for t, lp in zip(top_id[i], top_lp[i])],
                   "logprob": float(lens[i, target]), "rank": int(ranks[i]) + 1} for i in range(lens.shape[0])]
        settled = next((i for i in range(len(layers)) if all(x["rank"] == 1 for x in layers[i:])), None)
        return {"token": self.piece(target), "token_id": target, "layers": layers, "settled_at": settled,
                "final_logprob": float(final[target])}

    async def logit_lens(self, prefix: str, token_ids: list[int], index: int, k: int = 5, steer=(),
                         steer_prompt: bool = False) -> dict:
        return await self._model_thread.call(partial(self._logit_lens, prefix, token_ids, index, k, steer,
                                                     steer_prompt))
