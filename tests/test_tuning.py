"""Tuning on a tiny model in seconds: the budget is respected, the adapter loads back as a model and changes its
outputs, the KL estimate matches two separate models computed directly, bad input and interruptions leave
nothing half-registered."""

import json
import math
import os

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

import torch  # noqa: E402

from loomwork.errors import InvalidInput, NotFound  # noqa: E402
from loomwork.tuning import adapters, data  # noqa: E402
from loomwork.tuning import kl as kl_mod  # noqa: E402
from loomwork.tuning.train import TuneConfig, tune  # noqa: E402

STYLE = " zz zz zz."


@pytest.fixture
def base(tmp_path):
    """A tiny random Llama saved as a Hugging Face directory: a base model loomwork loads by path."""
    from tests.tiny_model import build_tiny_lm

    lm, tok = build_tiny_lm(seed=3)
    d = tmp_path / "tiny-base"
    lm.save_pretrained(d)
    tok.save_pretrained(d)
    return str(d)


def _sft_rows(k=12):
    words = ["river", "stone", "light", "bread", "cloud", "grass", "paper", "glass", "storm", "honey", "sand", "wolf"]
    return [{"prompt": f"A {w} and a {words[(i + 3) % len(words)]}:", "completion": STYLE} for i, w in enumerate(words[:k])]


def _dpo_rows(k=12):
    return [{"prompt": r["prompt"], "chosen": STYLE, "rejected": " ab cd ef."} for r in _sft_rows(k)]


FAST = dict(lora_r=4, lora_alpha=8, epochs=6, lr=5e-3, batch_size=4, eval_every=3, kl_samples=2, kl_tokens=8,
            kl_prompts=2, heldout=0.25)


def test_sft_within_a_generous_budget_learns_the_style_and_loads_back(base):
    from loomwork.backends.hf_load import load

    record = tune("style", base, _sft_rows(), TuneConfig(method="sft", kl_budget=50.0, **FAST))
    assert record["status"] == "done"
    assert record["kl_bits"] <= 50.0
    assert record["heldout_loss"] < record["heldout_loss_before"] - 0.5  # it learnt the held-out style
    curve = json.loads((adapters.directory("style") / "curve.json").read_text())
    assert curve["points"][0]["step"] == 0 and curve["points"][0]["kl_bits"] == pytest.approx(0.0, abs=1e-9)
    assert (adapters.directory("style") / "curve.png").exists()
    tuned, tok = load(f"{base}+style")
    plain, _ = load(base)
    ids = torch.tensor([tok.encode("A moon and a tree:" + STYLE)])
    with torch.no_grad():
        a = torch.log_softmax(tuned(input_ids=ids).logits[0].double(), -1)
        b = torch.log_softmax(plain(input_ids=ids).logits[0].double(), -1)
    n = len(tok.encode("A moon and a tree:"))
    gain = sum(float(a[j - 1, ids[0, j]] - b[j - 1, ids[0, j]]) for j in range(n, ids.shape[1]))
    assert gain > 2  # the tuned model gives the style far more probability on an unseen prompt
    listed = adapters.list_adapters()
    assert [a["name"] for a in listed] == ["style"] and listed[0]["status"] == "done"


def test_a_small_budget_stops_and_keeps_the_last_checkpoint_within_it(base):
    cfg = TuneConfig(method="sft", kl_budget=0.05, **{**FAST, "lr": 3e-3, "eval_every": 1})
    record = tune("tight", base, _sft_rows(), cfg)
    assert record["status"] == "stopped at the KL budget"
    assert record["kl_bits"] <= 0.05 < record["stopped_at"]["kl_bits"]
    assert 0 < record["step"] < record["stopped_at"]["step"]
    # a budget not even the first step stays within: an error, and nothing registered (it would be the base)
    with pytest.raises(InvalidInput, match="over the budget"):
        tune("none", base, _sft_rows(), TuneConfig(method="sft", kl_budget=1e-6, **{**FAST, "lr": 2e-2}))
    assert [a["name"] for a in adapters.list_adapters()] == ["tight"]


def test_dpo_moves_towards_chosen(base):
    from loomwork.backends.hf_load import load

    record = tune("pref", base, _dpo_rows(), TuneConfig(method="dpo", kl_budget=50.0, beta=0.5, **FAST))
    assert record["status"] == "done" and record["heldout_loss"] < record["heldout_loss_before"]
    tuned, tok = load(f"{base}+pref")
    plain, _ = load(base)

    def margin(lm):
        lp = []
        for text in (STYLE, " ab cd ef."):
            ids = torch.tensor([tok.encode("A moon and a tree:" + text)])
            with torch.no_grad():
                out = torch.log_softmax(lm(input_ids=ids).logits[0].double(), -1)
            n = len(tok.encode("A moon and a tree:"))
            lp.append(sum(float(out[j - 1, ids[0, j]]) for j in range(n, ids.shape[1])))
        return lp[0] - lp[1]

    assert margin(tuned) > margin(plain) + 1


def test_the_kl_estimate_against_two_separate_models(base):
    """The estimator's per-sample KL (one model, adapter on and off) against the merged tuned model and the base
    loaded separately, on the same sampled texts."""
    from peft import LoraConfig, get_peft_model

    from loomwork.backends.hf_load import load

    lm, tok = load(base)
    torch.manual_seed(0)
    model = get_peft_model(lm, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0))
    with torch.no_grad():  # a non-zero adapter
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    rows = kl_mod.sample(model, tok, ["A moon and a tree:"], 3, 8, 1, "cpu")
    got = kl_mod.per_sample_kl(model, rows, "cpu")
    merged = model.merge_and_unload()
    plain, _ = load(base)
    for (start, ids, n), value in zip(rows, got):
        x = torch.tensor([ids])
        with torch.no_grad():
            p = torch.log_softmax(merged(input_ids=x).logits[0, start - 1 : start - 1 + n].double(), -1)
            q = torch.log_softmax(plain(input_ids=x).logits[0, start - 1 : start - 1 + n].double(), -1)
        want = float((p.exp() * (p - q)).sum(-1).mean()) / math.log(2)
        assert value == pytest.approx(want, abs=1e-6)
    assert all(v > 0 for v in got)


def test_bad_input_changes_nothing(base, tmp_path):
    f = tmp_path / "rows.jsonl"
    for text, kind, error in [("", "sft", "no rows"),
                              ('{"prompt": "a", "completion": "b"}\n\n{"prompt": "a"}\n', "sft",
                               "rows.jsonl line 3: missing field 'completion'"),
                              ('{"prompt": "a", "chosen": "b", "rejected": "b"}\n', "dpo",
                               "line 1: 'chosen' and 'rejected' are the same"),
                              ("{not json\n", "sft", "line 1: not JSON")]:
        f.write_text(text)
        with pytest.raises(InvalidInput, match=error):
            data.read_rows(f, kind)
    for budget in (0, -1, float("nan"), float("inf")):
        with pytest.raises(InvalidInput, match="KL budget"):
            tune("x", base, _sft_rows(), TuneConfig(kl_budget=budget, **FAST))
    with pytest.raises(InvalidInput, match="at least 2 rows"):
        tune("x", base, _sft_rows(1), TuneConfig(kl_budget=1, **FAST))
    long = [{"prompt": "word " * 200, "completion": STYLE}] * 3  # 1,000+ characters: past the 512-token window
    with pytest.raises(InvalidInput, match="longer than the model's context window of 512"):
        tune("x", base, long, TuneConfig(kl_budget=1, **FAST))
    with pytest.raises(InvalidInput, match="name"):
        tune("bad name", base, _sft_rows(), TuneConfig(kl_budget=1, **FAST))
    assert adapters.list_adapters() == [] and not adapters.directory("x").exists()
    tune("once", base, _sft_rows(), TuneConfig(kl_budget=50, **{**FAST, "epochs": 1}))
    with pytest.raises(InvalidInput, match="exists already"):
        tune("once", base, _sft_rows(), TuneConfig(kl_budget=50, **FAST))
    from loomwork.backends.hf_load import load

    with pytest.raises(InvalidInput, match="was trained on"):
        load("gemma-3-270m+once")
    with pytest.raises(NotFound):
        load(f"{base}+nope")


def test_an_interrupted_run_keeps_its_last_checkpoint(base):
    from loomwork.backends.hf_load import load

    def interrupt(event):
        if event["event"] == "step" and event["step"] == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tune("cut", base, _sft_rows(), TuneConfig(kl_budget=50, **FAST), progress=interrupt)
    m = adapters.meta("cut")
    assert m["status"] == "interrupted" and m["step"] == 3
    load(f"{base}+cut")  # usable
    # a run killed outright (no chance to write its status) shows as interrupted once its process is gone
    record = {**m, "status": "training", "pid": 2**22 + 12345}
    adapters.write_meta("cut", record)
    assert adapters.status(adapters.meta("cut")) == "interrupted"
    assert [a["status"] for a in adapters.list_adapters()] == ["interrupted"]
    assert adapters.status({"status": "training", "pid": os.getpid()}) == "training"


def test_the_cli_tunes_lists_and_the_adapter_expands_in_the_loom(base, tmp_path):
    from click.testing import CliRunner

    from loomwork.cli import cli

    f = tmp_path / "sft.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in _sft_rows()))
    runner = CliRunner()
    out = runner.invoke(cli, ["tune", "cli-style", "--base", base, "--data", str(f), "--kl-budget", "50",
                              "--lora-r", "4", "--epochs", "3", "--lr", "5e-3", "--eval-every", "3", "--no-report",
                              "--json"])
    assert out.exit_code == 0, out.output
    record = json.loads(out.stdout)["adapter"]
    assert record["status"] == "done" and record["kl_bits"] <= 50
    listed = runner.invoke(cli, ["adapters", "list"])
    assert f"hf:{base}+cli-style" in listed.stdout
    root = json.loads(runner.invoke(cli, ["new", "A moon and a tree:", "--json"]).stdout)["root"]["id"]
    expanded = runner.invoke(cli, ["expand", root, "-m", f"hf:{base}+cli-style", "-n", "2", "--max-tokens", "6",
                                   "--json"])
    assert expanded.exit_code == 0, expanded.output
    gen = json.loads(expanded.stdout)["generation"]
    assert gen["backend"] == "hf" and gen["model"] == f"{base}+cli-style"  # nodes it generates say so
    again = runner.invoke(cli, ["tune", "cli-style", "--base", base, "--data", str(f), "--kl-budget", "1"])
    assert again.exit_code != 0 and "exists already" in again.output
    bad = runner.invoke(cli, ["tune", "other", "--base", base, "--data", str(f), "--kl-budget", "0"])
    assert bad.exit_code != 0 and "KL budget" in bad.output
    assert runner.invoke(cli, ["adapters", "delete", "cli-style"]).exit_code == 0
    assert "no adapters" in runner.invoke(cli, ["adapters", "list"]).stdout
