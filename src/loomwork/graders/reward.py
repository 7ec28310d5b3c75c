"""Reward-model graders: a small model with a one-number head, trained with TRL's RewardTrainer on preference rows
(chosen over rejected, a Bradley-Terry loss) on CPU, saved beside the data and loaded back to score.

The rows are split by prompt as tuning's are (tuning/data.py: no held-out prompt or text is trained on); the
grader records its pairwise accuracy on the held-out rows beside its training accuracy, and what shaped it
(tuning/provenance.py) in ``loomwork.json`` in its directory."""

from __future__ import annotations

import json
import shutil
import warnings
import tempfile
import time
from pathlib import Path
from typing import Callable

from .. import config
from ..engine.device import resolve as resolve_placement
from ..errors import InvalidInput

_LOADED: dict[str, tuple] = {}


def directory(name: str) -> Path:
    return config.home() / "reward-models" / name


def _base_dir(base: str) -> Path:
    from ..backends.hf_load import convert_gguf, converted_dir, resolve_source

    found = converted_dir(base)
    if found is None:
        kind, path = resolve_source(base)
        found = path if kind == "dir" else convert_gguf(base, path)
    return Path(found)


def _quiet(trainer) -> None:
    """No bars or raw log dicts from the Trainer unless progress is shown (a piped run prints only results)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from ..progress import interactive

    if not interactive():
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)


def _quiet_libraries() -> None:
    """datasets' bars (its map over the rows) and transformers' load report (the new score head, which is meant to
    be new) only when progress is shown."""
    import datasets
    import transformers

    from ..progress import interactive

    if not interactive():
        datasets.disable_progress_bars()
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()  # loading and writing the weights
    # transformers' renamed gradient-checkpointing arguments, used by TRL's config: nothing for a user to act on
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")


def train(name: str, base: str, rows: list[dict], epochs: int = 1, lr: float = 5e-5, batch_size: int = 4,
          max_length: int = 256, seed: int = 0, heldout: float = 0.2, heldout_rows: list[dict] | None = None,
          source: dict | None = None, progress: Callable[[str], None] = lambda _m: None) -> dict:
    """Train and save the reward model; returns what the grader's configuration records."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from ..tuning import data, provenance

    base = provenance.bare(base)
    rows = data.check_rows(rows, "dpo", "preference rows")
    if heldout_rows is not None:
        train_rows, held, dropped = data.split_with(rows, data.check_rows(heldout_rows, "dpo", "held-out rows"))
        how = "given"
    else:
        (train_rows, held), dropped, how = data.split(rows, heldout, seed), 0, f"{heldout:g} of the prompts, seed {seed}"
    target = directory(name)
    if target.exists():
        raise InvalidInput(f"a reward model named {name!r} exists already at {target}")
    src = _base_dir(base)
    torch.manual_seed(seed)
    started = time.monotonic()
    progress(f"training a reward model on {len(train_rows)} rows ({len(held)} held out by prompt) from {base}")
    _quiet_libraries()
    tok = AutoTokenizer.from_pretrained(str(src))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    placement = resolve_placement()  # LOOMWORK_DEVICE and LOOMWORK_DTYPE, as the models it grades beside
    model = AutoModelForSequenceClassification.from_pretrained(str(src), num_labels=1, dtype=placement.torch_dtype())
    model.config.pad_token_id = tok.pad_token_id
    from ..progress import interactive

    with tempfile.TemporaryDirectory() as work:
        args = RewardConfig(output_dir=work, num_train_epochs=epochs, per_device_train_batch_size=batch_size,
                            learning_rate=lr, report_to=[], save_strategy="no", logging_steps=1, seed=seed,
                            use_cpu=placement.device == "cpu", max_length=max_length,
                            disable_tqdm=not interactive())
        trainer = RewardTrainer(model=model, args=args, train_dataset=Dataset.from_list(train_rows),
                                processing_class=tok)
        _quiet(trainer)
        result = trainer.train()
    model.eval()
    trained_in = time.monotonic() - started
    accuracy = {}
    for split, part in (("train", train_rows), ("heldout", held)):
        progress(f"scoring the {len(part)} {'training' if split == 'train' else 'held-out'} pairs")
        chosen = scores(model, tok, [r["prompt"] + r["chosen"] for r in part])
        rejected = scores(model, tok, [r["prompt"] + r["rejected"] for r in part])
        accuracy[split] = sum(c > r for c, r in zip(chosen, rejected)) / len(part)
    progress("saving")
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    made = {"path": str(target), "base": base, "rows": len(rows), "train_rows": len(train_rows),
            "heldout_rows": len(held), "epochs": epochs, "train_loss": float(result.training_loss),
            "train_accuracy": accuracy["train"], "heldout_accuracy": accuracy["heldout"],
            "seconds": {"training": trained_in, "all": time.monotonic() - started}}
    record = {**made, "provenance": provenance.record(source or {"rows": "given to the library"}, rows, train_rows,
                                                      held, dropped, base, seed, how)}
    (tmp / "loomwork.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    tmp.rename(target)  # whole, or not there
    progress(f"pairwise accuracy: {accuracy['train']:.3f} on the training rows, {accuracy['heldout']:.3f} held out")
    return made


def scores(model, tok, texts: list[str], batch: int = 8) -> list[float]:
    """The model's number for each text, in batches (the head reads each row's last real token)."""
    import torch

    out: list[float] = []
    with torch.no_grad():
        for i in range(0, len(texts), batch):
            enc = tok(texts[i : i + batch], return_tensors="pt", truncation=True, max_length=1024, padding=True)
            enc = {k: v.to(model.device) for k, v in enc.items()}  # the model's device (a GPU where there is one)
            out += model(**enc).logits[:, 0].float().tolist()
    return out


def score(path: str, context: str, text: str) -> float:
    """The reward model's number for the text after its context."""
    if path not in _LOADED:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path)
        placement = resolve_placement()
        where = {} if placement.device == "cpu" else {"device_map": placement.device}
        model = AutoModelForSequenceClassification.from_pretrained(path, dtype=placement.torch_dtype(), **where).eval()
        _LOADED[path] = (model, tok)
    model, tok = _LOADED[path]
    return scores(model, tok, [context + text])[0]
