"""Reward-model graders: a small model with a one-number head, trained with TRL's RewardTrainer on the preference
export (chosen over rejected, a Bradley-Terry loss) on CPU, saved beside the data and loaded back to score."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from .. import config
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


def train(name: str, base: str, rows: list[dict], epochs: int = 1, lr: float = 5e-5, batch_size: int = 4,
          max_length: int = 256, seed: int = 0) -> dict:
    """Train and save the reward model; returns what the grader's configuration records."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from ..tuning.data import check_rows

    rows = check_rows(rows, "dpo", "preference rows")
    target = directory(name)
    if target.exists():
        raise InvalidInput(f"a reward model named {name!r} exists already at {target}")
    src = _base_dir(base)
    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(str(src))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(str(src), num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tok.pad_token_id
    with tempfile.TemporaryDirectory() as work:
        args = RewardConfig(output_dir=work, num_train_epochs=epochs, per_device_train_batch_size=batch_size,
                            learning_rate=lr, report_to=[], save_strategy="no", logging_steps=1, seed=seed,
                            use_cpu=not torch.cuda.is_available(), max_length=max_length)
        trainer = RewardTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
        result = trainer.train()
    model.eval()
    right = sum(_score(model, tok, r["prompt"] + r["chosen"]) > _score(model, tok, r["prompt"] + r["rejected"])
                for r in rows)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(target)  # whole, or not there
    return {"path": str(target), "base": base, "rows": len(rows), "epochs": epochs,
            "train_loss": float(result.training_loss), "train_accuracy": right / len(rows)}


def _score(model, tok, text: str) -> float:
    import torch

    with torch.no_grad():
        enc = tok(text, return_tensors="pt", truncation=True, max_length=1024)
        return float(model(**enc).logits[0, 0])


def score(path: str, context: str, text: str) -> float:
    """The reward model's number for the text after its context."""
    if path not in _LOADED:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()
        _LOADED[path] = (model, tok)
    model, tok = _LOADED[path]
    return _score(model, tok, context + text)
