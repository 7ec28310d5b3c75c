"""The supervision exports are real training data: each loads with `datasets` and drives one training step of
TRL's trainers on a tiny model built here."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("trl")
pytest.importorskip("datasets")

from loomwork import ops  # noqa: E402
from loomwork.supervision import ratings  # noqa: E402
from loomwork.supervision.formats import export_jsonl  # noqa: E402


@pytest.fixture
def exported(store, tmp_path):
    tree, root = ops.new_tree(store, "Q: 2 + 2?")
    good = ops.add_child(store, root.id, "\nA: 2 + 2 = 4.")
    bad = ops.add_child(store, root.id, "\nA: 2 + 2 = 5.")
    end = ops.add_child(store, good.id, "\nSo the answer is 4.")
    for node, label in [(good, 1), (bad, -1), (end, 1)]:
        ratings.rate(store, node.id, "ann", label)
    files = {}
    for fmt in ("sft", "preference", "stepwise", "prm800k"):
        path = tmp_path / f"{fmt}.jsonl"
        path.write_text(export_jsonl(store, tree.id, fmt))
        files[fmt] = str(path)
    return files


def _load(path):
    from datasets import load_dataset

    return load_dataset("json", data_files=path, split="train")


def test_every_export_loads_with_datasets(exported):
    sft, pref, step, prm = (_load(exported[f]) for f in ("sft", "preference", "stepwise", "prm800k"))
    assert set(sft.column_names) == {"prompt", "completion"} and len(sft) == 1
    assert set(pref.column_names) == {"prompt", "chosen", "rejected"}
    assert pref[0]["chosen"].endswith("= 4.") and pref[0]["rejected"].endswith("= 5.")
    assert set(step.column_names) == {"prompt", "completions", "labels"}
    assert {tuple(r["labels"]) for r in step} == {(True, True), (False,)}
    assert prm[0]["question"]["problem"] == "Q: 2 + 2?" and prm[0]["label"]["steps"][0]["completions"]


def _args(cls, tmp_path, **extra):
    return cls(output_dir=str(tmp_path / cls.__name__), max_steps=1, per_device_train_batch_size=1,
               report_to=[], save_strategy="no", logging_steps=1, use_cpu=True, **extra)


def test_one_step_of_sft_dpo_and_reward_training(exported, tmp_path, tiny_lm):
    import torch
    from transformers import LlamaForSequenceClassification
    from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer, SFTConfig, SFTTrainer

    lm, tok = tiny_lm
    lm = type(lm)(lm.config)  # a fresh copy: training must not disturb the shared fixture
    lm.config.pad_token_id = tok.pad_token_id

    sft = SFTTrainer(model=lm, args=_args(SFTConfig, tmp_path, max_length=128), train_dataset=_load(exported["sft"]),
                     processing_class=tok)
    assert sft.train().global_step == 1

    dpo = DPOTrainer(model=lm, ref_model=type(lm)(lm.config), args=_args(DPOConfig, tmp_path, max_length=128),
                     train_dataset=_load(exported["preference"]), processing_class=tok)
    assert dpo.train().global_step == 1

    torch.manual_seed(0)
    cfg = lm.config.__class__(**{**lm.config.to_dict(), "num_labels": 1})
    rm = LlamaForSequenceClassification(cfg)
    reward = RewardTrainer(model=rm, args=_args(RewardConfig, tmp_path, max_length=128),
                           train_dataset=_load(exported["preference"]), processing_class=tok)
    out = reward.train()
    assert out.global_step == 1 and math.isfinite(out.training_loss)
