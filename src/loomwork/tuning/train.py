"""The tuning run: LoRA (peft) on SFT or preference rows split by prompt, evaluated at intervals for KL(tuned ‖
base) and held-out loss, stopped at the KL budget with the last checkpoint within it kept (docs/tuning.md).

A plain loop rather than TRL's trainers: the KL budget decides when to stop and which checkpoint survives, a
Ctrl-C (or Stop in the page) must leave that checkpoint registered, a run must resume from it, and SFT and DPO must
share the same evaluation. The losses are in losses.py; what a run records of its data and base, provenance.py.

A run's directory holds the exact rows it used (rows.jsonl, each marked train or held-out), its events
(progress.jsonl, which the page follows) and its checkpoints, each with the optimizer's state for ``resume``.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
import warnings
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ..errors import InvalidInput
from . import adapters, data, provenance
from . import kl as kl_mod
from .losses import encode, heldout_loss, loss

ROWS = "rows.jsonl"
STATE = "trainer_state.pt"
STOP = "STOP"  # a file a run checks for between steps: a stop asked from elsewhere (the page)


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
    heldout: float = 0.2  # share of the prompts held out (unless held-out rows are given)
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

    @classmethod
    def from_record(cls, cfg: dict) -> "TuneConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in cfg.items() if k in known})


class Stopped(Exception):
    """A stop asked for between steps (the STOP file): the run ends keeping its last checkpoint."""


def prepare(rows: list[dict], cfg: TuneConfig, heldout_rows: list[dict] | None = None
            ) -> tuple[list[dict], list[dict], int, str]:
    """(train, held-out, rows dropped, how): checked rows split by prompt, or against the held-out rows given."""
    cfg.check()
    rows = data.check_rows(rows, cfg.method)
    if heldout_rows is not None:
        train, held, dropped = data.split_with(rows, data.check_rows(heldout_rows, cfg.method, "held-out rows"))
        return train, held, dropped, "given"
    train, held = data.split(rows, cfg.heldout, cfg.seed)
    return train, held, 0, f"{cfg.heldout:g} of the prompts, seed {cfg.seed}"


def tune(name: str, base: str, rows: list[dict], cfg: TuneConfig, progress: Callable[[dict], None] = lambda _e: None,
         loaded=None, heldout_rows: list[dict] | None = None, source: dict | None = None,
         options: dict | None = None) -> dict:
    """Train adapter ``name`` on ``base`` (a model name hf_load can load, or ``hf:NAME``) from ``rows``; return its
    record. ``heldout_rows``: hold out exactly these (rows sharing a prompt or text with them are not trained on);
    else a seeded ``cfg.heldout`` share of the prompts. ``source``: where the rows came from (recorded);
    ``options``: what the caller does around the run (the CLI's report), recorded so that a resume does the same.
    ``loaded``: (model, tokenizer) already in memory (tests)."""
    base = provenance.bare(base)
    adapters.check_name(name)
    if adapters.split_model(base)[1]:
        raise InvalidInput(f"{base!r} is an adapter: tune from its base model")
    train, held, dropped, how = prepare(rows, cfg, heldout_rows)
    claim(name, base, rows, train, held, dropped, how, cfg, source or {"rows": "given to the library"}, options)
    return run_claimed(name, progress, loaded)


def claim(name: str, base: str, rows: list[dict], train: list[dict], held: list[dict], dropped: int, how: str,
          cfg: TuneConfig, source: dict, options: dict | None = None) -> dict:
    """Claim the name and write what the run will use (its record and its rows), before any model loads."""
    if adapters.directory(name).exists() and adapters.claimed(name) is None:
        raise InvalidInput(f"an adapter named {name!r} exists already (delete it first, or pick another name)")
    record = {"name": name, "base": base, "config": asdict(cfg), "rows": {"train": len(train), "heldout": len(held)},
              "provenance": provenance.record(source, rows, train, held, dropped, base, cfg.seed, how),
              "options": options or {}, "pid": os.getpid(), "status": "starting",
              "created_at": datetime.now(timezone.utc).isoformat()}
    d = adapters.begin(name, record)
    with (d / ROWS).open("w", encoding="utf-8") as f:
        for split, part in (("train", train), ("heldout", held)):
            for r in part:
                f.write(json.dumps({"split": split, **r}, ensure_ascii=False) + "\n")
    return record


def _read_rows(name: str, record: dict) -> tuple[list[dict], list[dict]]:
    train, held = [], []
    try:
        lines = (adapters.directory(name) / ROWS).read_text(encoding="utf-8").splitlines()
    except OSError:
        raise InvalidInput(f"adapter {name!r} has no record of its rows ({ROWS}): it cannot be resumed") from None
    for line in lines:
        row = json.loads(line)
        (train if row.pop("split") == "train" else held).append(row)
    expected = record["provenance"]["data"]
    if data.digest(train) != expected["train"]["sha256"] or data.digest(held) != expected["heldout"]["sha256"]:
        raise InvalidInput(f"adapter {name!r}: its {ROWS} no longer matches the sha256 recorded: it cannot be resumed")
    return train, held


def resume(name: str, progress: Callable[[dict], None] = lambda _e: None, loaded=None) -> dict:
    """Continue an interrupted run from its last checkpoint: its rows, settings, optimizer state and place in the
    data order. A finished run, a run still alive, or one made before runs could resume is refused."""
    record = adapters.describe(name)
    state = record["status"]
    if state in ("training", "starting"):
        raise InvalidInput(f"adapter {name!r} is still being trained (process {record.get('pid')}): nothing to resume")
    if state != "interrupted" and not state.startswith("stopped by request"):
        raise InvalidInput(f"adapter {name!r} is {state!r}: only an interrupted or stopped run can be resumed")
    if "provenance" not in record or not (adapters.checkpoint(name) / STATE).exists():
        raise InvalidInput(f"adapter {name!r} was made before runs could be resumed (no optimizer state in its "
                           "checkpoint): train a new one")
    adapters.write_meta(name, {**adapters.meta(name), "pid": os.getpid(), "status": "training"})
    return run_claimed(name, progress, loaded, resuming=True)


def run_claimed(name: str, progress: Callable[[dict], None] = lambda _e: None, loaded=None,
                resuming: bool = False, keep_failed: bool = False) -> dict:
    """Train a run that has claimed its name (``claim``), or resume one; its events go to ``progress`` and to
    its progress file. A run that fails before its first checkpoint gives its name back, or with ``keep_failed``
    (a run started from the page) stays listed as failed, with the reason, until the name is used again."""
    record = adapters.describe(name) if resuming else adapters.claimed(name)
    cfg = TuneConfig.from_record(record["config"])
    train_rows, held_rows = _read_rows(name, record)

    def emit(event: dict) -> None:
        event = {**event, "time": time.time()}
        adapters.log(name, event)
        progress(event)

    try:
        return _train(name, record, cfg, train_rows, held_rows, emit, loaded, resuming)
    except BaseException as exc:
        if not resuming and adapters.claimed(name) is not None:  # nothing committed: nothing usable to keep
            message = str(exc) or type(exc).__name__
            emit({"event": "error", "message": message})
            if keep_failed:
                adapters.fail(name, message)
            else:
                adapters.abandon(name)
        raise


def _train(name: str, record: dict, cfg: TuneConfig, train_rows: list[dict], held_rows: list[dict], emit,
           loaded, resuming: bool) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from peft.utils import load_peft_weights

    from ..backends.hf_load import load
    from ..engine.device import resolve as resolve_placement

    base = record["base"]
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")  # peft's gradient-checkpointing calls
    started = time.monotonic()
    emit({"event": "load", "base": base})
    placement = resolve_placement()  # LOOMWORK_DEVICE / --device: a GPU when one is there, in bfloat16
    lm, tok = loaded or load(base, placement)
    emit({"event": "loaded", "seconds": time.monotonic() - started})
    device = next(lm.parameters()).device
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
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    curve: list[dict] = []
    first = 0
    if resuming:
        ckpt = adapters.checkpoint(name)
        set_peft_model_state_dict(model, load_peft_weights(str(ckpt)))
        state = torch.load(ckpt / STATE, weights_only=True)
        optim.load_state_dict(state["optimizer"])
        first, curve = state["step"], list(adapters.meta(name).get("curve", []))
        curve = [p for p in curve if p["step"] <= first]
        emit({"event": "resumed", "step": first})
    stop_file = adapters.directory(name) / STOP
    if resuming:
        stop_file.unlink(missing_ok=True)  # the request that stopped it before

    def evaluate(step: int) -> dict:
        emit({"event": "eval-start", "step": step, "prompts": len(prompts), "samples": cfg.kl_samples,
              "tokens": cfg.kl_tokens})
        t = time.monotonic()
        point = {"step": step, "heldout_loss": heldout_loss(model, held, pad, device),
                 **kl_mod.estimate(model, tok, prompts, cfg.kl_samples, cfg.kl_tokens, cfg.seed, device)}
        curve.append(point)
        emit({"event": "eval", **point, "seconds": time.monotonic() - t})
        return point

    committed: dict = {}

    def commit(point: dict, step: int) -> None:
        committed.clear()
        committed.update(point)
        meta = {**record, "status": "training", "pid": os.getpid(), "kl_bits": point["kl_bits"],
                "precision": {"device": str(device), "weights": str(next(lm.parameters()).dtype).removeprefix("torch.")},
                "kl_se": point["kl_se"], "heldout_loss": point["heldout_loss"], "step": step,
                "heldout_loss_before": curve[0]["heldout_loss"], "curve": curve}
        adapters.commit(name, model, step, meta, extra=lambda d: torch.save(
            {"optimizer": optim.state_dict(), "step": step}, Path(d) / STATE))

    over = None
    status = "done"
    try:
        if resuming:
            committed.update(curve[-1] if curve else {})
        else:
            commit(evaluate(0), 0)  # the untrained adapter (LoRA starts at zero: the base itself), so one always exists
        model.train()
        rng = random.Random(cfg.seed)
        orders = []
        for _epoch in range(cfg.epochs):  # every epoch's order, from the seed: a resumed run skips to its place
            order = list(range(len(train)))
            rng.shuffle(order)
            orders.append(order)
        steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
        total, step = cfg.epochs * steps_per_epoch, 0
        for order in orders:
            for i in range(0, len(order), cfg.batch_size):
                step += 1
                if step <= first:
                    continue
                if stop_file.exists():
                    raise Stopped
                t = time.monotonic()
                value = loss(model, [train[j] for j in order[i : i + cfg.batch_size]], cfg.method, cfg.beta, pad, device)
                optim.zero_grad()
                value.backward()
                optim.step()
                emit({"event": "step", "step": step, "total": total, "loss": float(value.detach()),
                      "seconds": time.monotonic() - t})
                if step % cfg.eval_every == 0 or step == total:
                    point = evaluate(step)
                    if point["kl_bits"] > cfg.kl_budget:
                        over = point
                        break
                    commit(point, step)
            if over:
                break
        if over:  # back to the last checkpoint within the budget
            set_peft_model_state_dict(model, load_peft_weights(str(adapters.checkpoint(name))))
            status = "stopped at the KL budget"
    except KeyboardInterrupt:
        if not committed:
            raise  # before the first checkpoint: nothing usable (run_claimed removes the claim)
        status = "interrupted"
    except Stopped:
        status = "stopped by request"
    finally:
        stop_file.unlink(missing_ok=True)
    if status.startswith("stopped at") and committed.get("step") == 0:
        # not one training step stayed within the budget: the adapter would be the base itself
        adapters.delete(name, own_run=True)
        raise InvalidInput(f"the first evaluation after training (step {over['step']}) already spent "
                           f"{over['kl_bits']:.4f} bits/token, over the budget of {cfg.kl_budget}: nothing was kept "
                           "(raise --kl-budget, lower --lr or evaluate more often with --eval-every)")
    final = {**adapters.meta(name), "status": status, "curve": curve,
             "stopped_at": over if status.startswith("stopped at") else None,
             "seconds": (adapters.meta(name).get("seconds") or 0.0) + time.monotonic() - started}
    adapters.write_meta(name, final)
    _plot(name, curve, cfg.kl_budget)
    emit({"event": "end", "status": status, **committed})
    if status == "interrupted":
        raise KeyboardInterrupt
    return final


def _plot(name: str, curve: list[dict], budget: float) -> None:
    """curve.json and curve.png beside the adapter: KL (with its standard error) and held-out loss by step."""
    from ..lens.plots import pyplot, save

    d = adapters.directory(name)
    (d / "curve.json").write_text(json.dumps({"kl_budget_bits": budget, "points": curve}, indent=1), encoding="utf-8")
    plt = pyplot()
    if plt is None:
        return
    steps = [p["step"] for p in curve]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    a.errorbar(steps, [p["kl_bits"] for p in curve], yerr=[p["kl_se"] or 0.0 for p in curve], marker="o", capsize=3)
    a.axhline(budget, color="crimson", linestyle="--", label="budget")
    a.set(xlabel="step", ylabel="KL(tuned ‖ base), bits/token", title=f"{name}: KL spent")
    a.legend()
    b.plot(steps, [p["heldout_loss"] for p in curve], marker="o")
    b.set(xlabel="step", ylabel="nats/token", title="held-out loss (held-out prompts)")
    save(fig, d / "curve.png")
