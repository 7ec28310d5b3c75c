"""The tuning loop: LoRA (peft) on SFT or preference rows, evaluated at intervals for KL(tuned ‖ base) and held-out
loss, stopped at the KL budget with the last checkpoint within it kept (docs/tuning.md).

A plain loop rather than TRL's trainers: the KL budget decides when to stop and which checkpoint survives, a
Ctrl-C must leave that checkpoint registered, and SFT and DPO must share the same evaluation. The losses are the
standard ones: SFT, the mean cross-entropy of the completion's tokens; DPO (Rafailov et al., 2023),
-log σ(β[(log π(chosen) − log π_ref(chosen)) − (log π(rejected) − log π_ref(rejected))]) with π_ref the base
(the adapter disabled).
"""

from __future__ import annotations

import math
import os
import random
import warnings
from datetime import datetime, timezone
from dataclasses import asdict, dataclass, field
from typing import Callable

from ..errors import InvalidInput
from . import adapters
from . import kl as kl_mod


@dataclass
class TuneConfig:
    method: str = "sft"  # sft | dpo
    kl_budget: float = 0.5  # bits per token
    lora_r: int = 8
    lora_alpha: int = 16
    epochs: int = 1
    lr: float = 2e-4
    batch_size: int = 4
    eval_every: int = 5  # steps
    beta: float = 0.1  # DPO
    heldout: float = 0.2
    seed: int = 0
    kl_samples: int = 4  # per held-out prompt
    kl_tokens: int = 24
    kl_prompts: int = 4
    max_length: int = 512  # tokens per row (the prompt is cut from the left beyond it)

    def check(self) -> None:
        if self.method not in ("sft", "dpo"):
            raise InvalidInput(f"unknown method {self.method!r} (sft or dpo)")
        if not (isinstance(self.kl_budget, (int, float)) and math.isfinite(self.kl_budget) and self.kl_budget > 0):
            raise InvalidInput(f"the KL budget must be a positive number of bits per token, not {self.kl_budget}")
        for name in ("lora_r", "epochs", "batch_size", "eval_every", "kl_samples", "kl_tokens", "kl_prompts",
                     "max_length"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"{name.replace('_', '-')} must be at least 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InvalidInput("the learning rate must be positive")


@dataclass
class Encoded:
    ids: list[int]
    scored: list[bool]  # which positions' tokens count (the completion's)


@dataclass
class Run:
    curve: list[dict] = field(default_factory=list)


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


def _loss(model, batch: list, method: str, beta: float, pad: int, device):
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


def tune(name: str, base: str, rows: list[dict], cfg: TuneConfig, progress: Callable[[dict], None] = lambda _e: None,
         loaded=None, heldout_rows: list[dict] | None = None) -> dict:
    """Train adapter ``name`` on ``base`` (a model name hf_load can load) from ``rows``; return its record.
    ``heldout_rows``: hold out exactly these (else a seeded ``cfg.heldout`` share of ``rows``). ``loaded``:
    (model, tokenizer) already in memory (tests)."""
    cfg.check()
    if adapters.directory(name).exists():  # before loading anything (adapters.begin claims it for good below)
        raise InvalidInput(f"an adapter named {name!r} exists already (delete it first, or pick another name)")
    from .data import check_rows, split

    rows = check_rows(rows, cfg.method)
    if heldout_rows is not None:
        train_rows, held_rows = rows, check_rows(heldout_rows, cfg.method, "held-out rows")
    else:
        train_rows, held_rows = split(rows, cfg.heldout, cfg.seed)
    import torch
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from peft.utils import load_peft_weights

    from ..backends.hf_load import load

    if adapters.split_model(base)[1]:
        raise InvalidInput(f"{base!r} is an adapter: tune from its base model")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")  # peft's gradient-checkpointing calls
    lm, tok = loaded or load(base)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    window = getattr(lm.config, "max_position_embeddings", None)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def enc(row, n, target):
        return encode(tok, row["prompt"], row[target], window, cfg.max_length, f"row {n}")

    if cfg.method == "sft":
        train = [enc(r, n, "completion") for n, r in enumerate(train_rows, 1)]
        held = [enc(r, n, "completion") for n, r in enumerate(held_rows, 1)]
    else:
        train = [(enc(r, n, "chosen"), enc(r, n, "rejected")) for n, r in enumerate(train_rows, 1)]
        held = [enc(r, n, "chosen") for n, r in enumerate(held_rows, 1)]
    prompts = list(dict.fromkeys(r["prompt"] for r in held_rows))[: cfg.kl_prompts]
    torch.manual_seed(cfg.seed)
    model = get_peft_model(lm, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                                          target_modules="all-linear", task_type="CAUSAL_LM")).to(device)
    record = {"name": name, "base": base, "config": asdict(cfg), "rows": {"train": len(train), "heldout": len(held)},
              "pid": os.getpid(), "status": "training",
              "created_at": datetime.now(timezone.utc).isoformat()}
    adapters.begin(name, record)
    run = Run()

    def evaluate(step: int) -> dict:
        point = {"step": step, "heldout_loss": heldout_loss(model, held, pad, device),
                 **kl_mod.estimate(model, tok, prompts, cfg.kl_samples, cfg.kl_tokens, cfg.seed, device)}
        run.curve.append(point)
        progress({"event": "eval", **point})
        return point

    committed: dict = {}

    def commit(point: dict) -> None:
        committed.clear()
        committed.update(point)
        adapters.commit(name, model, point["step"], {**record, "kl_bits": point["kl_bits"], "kl_se": point["kl_se"],
                                                     "heldout_loss": point["heldout_loss"], "step": point["step"],
                                                     "heldout_loss_before": run.curve[0]["heldout_loss"],
                                                     "curve": run.curve})

    try:
        commit(evaluate(0))  # the untrained adapter (LoRA starts at zero: the base itself), so one always exists
        optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
        model.train()
        rng = random.Random(cfg.seed)
        steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
        total, step, over = cfg.epochs * steps_per_epoch, 0, None
        for _epoch in range(cfg.epochs):
            order = list(range(len(train)))
            rng.shuffle(order)
            for i in range(0, len(order), cfg.batch_size):
                loss = _loss(model, [train[j] for j in order[i : i + cfg.batch_size]], cfg.method, cfg.beta, pad, device)
                optim.zero_grad()
                loss.backward()
                optim.step()
                step += 1
                progress({"event": "step", "step": step, "total": total, "loss": float(loss.detach())})
                if step % cfg.eval_every == 0 or step == total:
                    point = evaluate(step)
                    if point["kl_bits"] > cfg.kl_budget:
                        over = point
                        break
                    commit(point)
            if over:
                break
        if over:  # back to the last checkpoint within the budget
            set_peft_model_state_dict(model, load_peft_weights(str(adapters.checkpoint(name))))
        status = "stopped at the KL budget" if over else "done"
    except KeyboardInterrupt:
        if not committed:
            adapters.abandon(name)
            raise
        status = "interrupted"
    except BaseException:
        if not committed:
            adapters.abandon(name)
        raise
    if status.startswith("stopped") and committed.get("step") == 0:
        # not one training step stayed within the budget: the adapter would be the base itself
        adapters.delete(name)
        raise InvalidInput(f"the first evaluation after training (step {over['step']}) already spent "
                           f"{over['kl_bits']:.4f} bits/token, over the budget of {cfg.kl_budget}: nothing was kept "
                           "(raise --kl-budget, lower --lr or evaluate more often with --eval-every)")
    final = {**adapters.meta(name), "status": status, "curve": run.curve,
             "stopped_at": over if status.startswith("stopped") else None}
    adapters.write_meta(name, final)
    _plot(name, run.curve, cfg.kl_budget)
    progress({"event": "end", "status": status, **committed})
    if status == "interrupted":
        raise KeyboardInterrupt
    return final


def _plot(name: str, curve: list[dict], budget: float) -> None:
    """curve.json and curve.png beside the adapter: KL (with its standard error) and held-out loss by step."""
    import json

    from ..lens.plots import pyplot, save

    d = adapters.directory(name)
    (d / "curve.json").write_text(json.dumps({"kl_budget_bits": budget, "points": curve}, indent=1), encoding="utf-8")
    plt = pyplot()
    if plt is None:
        return
    steps = [p["step"] for p in curve]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    a.errorbar(steps, [p["kl_bits"] for p in curve], yerr=[p["kl_se"] for p in curve], marker="o", capsize=3)
    a.axhline(budget, color="crimson", linestyle="--", label="budget")
    a.set(xlabel="step", ylabel="KL(tuned ‖ base), bits/token", title=f"{name}: KL spent")
    a.legend()
    b.plot(steps, [p["heldout_loss"] for p in curve], marker="o")
    b.set(xlabel="step", ylabel="nats/token", title="held-out loss")
    save(fig, d / "curve.png")
