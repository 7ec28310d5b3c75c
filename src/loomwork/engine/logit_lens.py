"""The logit lens (docs/lens.md, "Logit lens"): what each decoder block's output predicts for the next token, read
through the model's own final norm and unembedding (and its final logit soft-capping, where it has one). The last
block's reading is the model's prediction itself; the earlier ones are the standard logit lens (nostalgebraist,
2020). Token ids in, per-layer log-probabilities out: the text level names the tokens.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext


def unembed(engine, hidden):
    """Logits of residual-stream states ``hidden`` (…, d) as the model reads its last block's output."""
    lm = engine.lm
    base = getattr(lm, "model", lm)
    norm = getattr(base, "norm", None) or getattr(base, "final_layernorm", None)
    if norm is None:
        from ..errors import Unsupported

        raise Unsupported("this model's final norm is not where the logit lens looks (model.norm)")
    logits = lm.get_output_embeddings()(norm(hidden)).float()
    cap = getattr(lm.config, "final_logit_softcapping", None)
    if cap:
        logits = engine.torch.tanh(logits / cap) * cap
    return logits


@contextmanager
def steered_from(engine, steer, start: int):
    """Steering as generation applied it: each vector added at its block's output from position ``start`` on (the
    prompt's last token and what follows; 0 with steer_prompt), unlike the engine's hooks, which add it to every
    position of the rows they are given."""
    torch = engine.torch
    layers = engine.layers()

    def hook_for(delta):
        def hook(_module, _inputs, output):
            hidden = (output if isinstance(output, torch.Tensor) else output[0]).clone()
            hidden[:, start:] += delta.to(hidden.dtype)
            return hidden if isinstance(output, torch.Tensor) else (hidden, *output[1:])
        return hook

    handles = [layers[s.layer].register_forward_hook(hook_for(engine.tensor(s.vector, dtype=torch.float32) * s.coef))
               for s in steer]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def logit_lens(engine, ids: list[int], position: int, steer=(), steer_from: int = 0):
    """Per decoder block, the log-softmax over the vocabulary that its output at ``position`` gives for the token
    after it (a tensor of blocks × vocabulary, float32), reading ``ids`` once; with ``steer``, the model as it
    generated with those vectors, added from position ``steer_from`` on."""
    torch = engine.torch
    layers = engine.layers()
    seen: dict[int, object] = {}

    def keep(i):
        def hook(_module, _inputs, output):
            hidden = output if isinstance(output, torch.Tensor) else output[0]
            seen[i] = hidden[0, position].detach()
        return hook

    # the steering hooks go on first, so each block's reading is what the next block gets (steered)
    with engine.thread.urgent(), torch.inference_mode(), (steered_from(engine, steer, steer_from) if steer
                                                          else nullcontext()):
        handles = [layer.register_forward_hook(keep(i)) for i, layer in enumerate(layers)]
        try:
            out = engine.forward([ids])
        finally:
            for h in handles:
                h.remove()
        states = torch.stack([seen[i] for i in range(len(layers))])
        lens = torch.log_softmax(unembed(engine, states), -1)
        final = torch.log_softmax(out.logits[0, position].float(), -1)
    return lens, final
