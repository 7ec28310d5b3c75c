"""Per-token KL(tuned ‖ base) on held-out prompts: texts sampled from the tuned model (temperature 1, no
truncation), both distributions at every sampled position over the whole vocabulary, the base computed by the
same model with its adapter disabled (no second model in memory). Per sample the mean over its tokens; reported
as the mean over samples and its standard error, in bits per token (as `loomwork kl`)."""

from __future__ import annotations


from ..lens.kl import mean_and_se
from ..units import LN2



def sample(model, tok, prompts: list[str], samples: int, max_tokens: int, seed: int, device) -> list[tuple]:
    """(prompt length, token ids of prompt and sample, sampled length before the end of text) per sample."""
    import torch

    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    eos = {tok.eos_token_id} if tok.eos_token_id is not None else set()
    out_rows = []
    with torch.no_grad():
        for k, prompt in enumerate(prompts):
            ids = tok(prompt, return_tensors="pt", add_special_tokens=True)["input_ids"].to(device)
            torch.manual_seed(seed + k)  # the samples of an evaluation are repeatable
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0,
                                 top_k=0, top_p=1.0, max_new_tokens=max_tokens, num_return_sequences=samples,
                                 pad_token_id=pad)
            start = ids.shape[1]
            for row in out.tolist():
                new = row[start:]
                end = next((j + 1 for j, t in enumerate(new) if t in eos), len(new))  # the end of text counts
                out_rows.append((start, row[: start + end], end))
    return out_rows


def per_sample_kl(model, rows: list[tuple], device) -> list[float]:
    """Mean KL(tuned ‖ base) per sampled token of each row, bits."""
    import torch

    out = []
    with torch.no_grad():
        for start, ids, n in rows:
            if n == 0:
                continue
            x = torch.tensor([ids], device=device)
            tuned = torch.log_softmax(model(input_ids=x).logits[0, start - 1 : start - 1 + n].double(), -1)
            with model.disable_adapter():
                base = torch.log_softmax(model(input_ids=x).logits[0, start - 1 : start - 1 + n].double(), -1)
            out.append(float((tuned.exp() * (tuned - base)).sum(-1).mean()) / LN2)
    return out


def estimate(model, tok, prompts: list[str], samples: int, max_tokens: int, seed: int, device) -> dict:
    was_training = model.training
    model.eval()
    try:
        values = per_sample_kl(model, sample(model, tok, prompts, samples, max_tokens, seed, device), device)
    finally:
        model.train(was_training)
    mean, se = mean_and_se(values)
    return {"kl_bits": mean, "kl_se": se, "samples": len(values)}
