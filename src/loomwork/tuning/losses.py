"""The losses of tuning, on rows encoded as the model reads them.

SFT: the mean cross-entropy of the completion's tokens. DPO (Rafailov et al., 2023):
-log σ(β[(log π(chosen) − log π_ref(chosen)) − (log π(rejected) − log π_ref(rejected))]) with π_ref the base (the
adapter disabled). The held-out loss: the mean cross-entropy of the held-out targets (completions, or chosen
responses). torch is imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidInput


@dataclass
class Encoded:
    ids: list[int]
    scored: list[bool]  # which positions' tokens count (the completion's)


def encode(tok, prompt: str, response: str, window: int | None, max_length: int, where: str) -> Encoded:
    """The whole text's canonical tokens; a token counts if any of its characters are the response's (a token
    that straddles the join belongs to what the person curated)."""
    enc = tok(prompt + response, add_special_tokens=True, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]
    if window and len(ids) > window:
        raise InvalidInput(f"{where}: {len(ids):,} tokens, longer than the model's context window of {window:,}")
    scored = [e > len(prompt) for _s, e in offsets]
    if not any(scored):
        raise InvalidInput(f"{where}: the response tokenises to nothing")
    if len(ids) > max_length:  # keep the end: the response and as much of the prompt as fits
        ids, scored = ids[-max_length:], scored[-max_length:]
    return Encoded(ids, scored)


def _batch(rows: list[Encoded], pad: int, device):
    import torch

    width = max(len(r.ids) for r in rows)
    ids = torch.tensor([r.ids + [pad] * (width - len(r.ids)) for r in rows], device=device)
    att = torch.tensor([[1] * len(r.ids) + [0] * (width - len(r.ids)) for r in rows], device=device)
    mask = torch.tensor([r.scored + [False] * (width - len(r.ids)) for r in rows], device=device)
    return ids, att, mask


def _token_logprobs(model, rows: list[Encoded], pad: int, device):
    """(sum of the scored tokens' logprobs per row, number of scored tokens per row)."""
    import torch

    ids, att, mask = _batch(rows, pad, device)
    logits = model(input_ids=ids, attention_mask=att).logits[:, :-1].float()
    lp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None])[..., 0]
    m = mask[:, 1:]
    return (lp * m).sum(-1), m.sum(-1)


def loss(model, batch: list, method: str, beta: float, pad: int, device):
    import torch

    if method == "sft":
        total, count = _token_logprobs(model, batch, pad, device)
        return -total.sum() / count.sum().clamp(min=1)
    chosen, rejected = [b[0] for b in batch], [b[1] for b in batch]
    pc, _ = _token_logprobs(model, chosen, pad, device)
    pr, _ = _token_logprobs(model, rejected, pad, device)
    with torch.no_grad(), model.disable_adapter():
        rc, _ = _token_logprobs(model, chosen, pad, device)
        rr, _ = _token_logprobs(model, rejected, pad, device)
    return -torch.nn.functional.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean()


def heldout_loss(model, rows: list[Encoded], pad: int, device, batch: int = 8) -> float:
    """Mean cross-entropy (nats per token) of the held-out targets: the completion, or the chosen response."""
    import torch

    total = count = 0.0
    was = model.training
    model.eval()
    with torch.no_grad():
        for i in range(0, len(rows), batch):
            t, c = _token_logprobs(model, rows[i : i + batch], pad, device)
            total += float(-t.sum())
            count += float(c.sum())
    model.train(was)
    return total / max(count, 1.0)
