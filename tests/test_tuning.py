"""Tuning on a tiny model in seconds: the budget is respected, the adapter loads back as a model and changes its
outputs, the KL estimate matches two separate models computed directly, bad input and interruptions leave
nothing half-registered."""

import json
import math
import os
from pathlib import Path

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
def base(tiny_base):
    """A tiny random Llama saved as a Hugging Face directory: a base model loomwork loads by path."""
    return tiny_base


def _sft_rows(k=12):
    """k prompts, each with its own completion in the style (a run of zz): no two rows share a prompt or a text,
    so a split by prompt can hold any of them out."""
    words = ["river", "stone", "light", "bread", "cloud", "grass", "paper", "glass", "storm", "honey", "sand", "wolf"]
    return [{"prompt": f"A {w} and a {words[(i + 3) % len(words)]}:", "completion": " zz" * (i % 6 + 1) + "." * (i // 6 + 1)}
            for i, w in enumerate(words[:k])]


def _dpo_rows(k=12):
    return [{"prompt": r["prompt"], "chosen": r["completion"], "rejected": r["completion"].replace("zz", "ab")}
            for r in _sft_rows(k)]


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
    # 1,000+ characters: past the 512-token window
    long = [{"prompt": f"word{i} " + "word " * 200, "completion": STYLE * (i + 1)} for i in range(3)]
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
    out = runner.invoke(cli, ["tune", "cli-style", "--base", f"hf:{base}", "--data", str(f), "--kl-budget", "50",
                              "--lora-r", "4", "--epochs", "3", "--lr", "5e-3", "--eval-every", "3", "--no-report",
                              "--heldout", "0.25", "--kl-prompts", "2", "--json"])
    assert out.exit_code == 0, out.output
    record = json.loads(out.stdout)["adapter"]
    assert record["status"] == "done" and record["kl_bits"] <= 50
    # every long step says what it does and what it costs
    for said in ("loading ", "loaded in", "evaluating at step 0: KL on 2 held-out prompts × 4 samples × 24 tokens",
                 "step 1/", "held-out loss"):
        assert said in out.stderr, (said, out.stderr)
    shown = runner.invoke(cli, ["adapters", "show", "cli-style"])
    assert shown.exit_code == 0 and f"sha256 {record['provenance']['data']['sha256']}" in shown.stdout
    assert "held out 3 rows on 3 prompts" in shown.stdout and f"base: {base}" in shown.stdout
    assert record["options"] == {"report": False}  # what a resume does again
    bad = runner.invoke(cli, ["tune", "cli-style", "--resume", "--data", str(f)])
    assert bad.exit_code == 2 and "give only NAME" in bad.output
    bad = runner.invoke(cli, ["tune", "cli-style", "--resume", "--epochs", "3", "--lr", "0.1"])
    assert bad.exit_code == 2 and "--epochs, --lr would be ignored" in bad.output
    bad = runner.invoke(cli, ["tune", "cli-style", "--resume"])
    assert bad.exit_code != 0 and "only an interrupted or stopped run can be resumed" in bad.output
    exported = runner.invoke(cli, ["adapters", "export", "cli-style", str(tmp_path / "exp")])
    assert exported.exit_code == 0 and (tmp_path / "exp" / "adapter_model.safetensors").exists()
    again = runner.invoke(cli, ["adapters", "export", "cli-style", str(tmp_path / "exp")])
    assert again.exit_code != 0 and "exists already" in again.output
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


def _repeating_dpo_rows(prompts=10, per_prompt=5):
    """A preference export's shape: each prompt's chosen text against each of its rejected siblings, so prompt
    and chosen text repeat across rows."""
    return [{"prompt": f"Story {p}:", "chosen": f" the chosen {p}.", "rejected": f" a sibling {p}-{k}."}
            for p in range(prompts) for k in range(per_prompt)]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("share", [0.1, 0.2, 0.5])
def test_a_dpo_export_whose_prompts_repeat_never_leaks_into_its_heldout_side(seed, share):
    rows = _repeating_dpo_rows()
    rows[7]["rejected"] = rows[31]["chosen"]  # a text shared across prompts joins them too
    train, held = data.split(rows, share, seed)
    assert len(train) + len(held) == len(rows) and train and held
    held_texts = {v for r in held for v in r.values()}
    assert not any(v in held_texts for r in train for v in r.values())  # no held-out prompt or text in training
    assert (rows[7] in held) == (rows[31] in held)


def test_a_deeper_step_of_one_path_stays_with_it():
    """A preference export of a path two choices deep: the second row's prompt is the first row's prompt and its
    chosen text, so holding one out and training on the other would train on held-out text."""
    rows = []
    for p in range(6):
        first = {"prompt": f"Story {p}:", "chosen": f" went on {p}.", "rejected": f" stopped {p}."}
        rows += [first, {"prompt": first["prompt"] + first["chosen"], "chosen": f" And then {p}.",
                         "rejected": f" The end {p}."}]
    for seed in range(10):
        train, held = data.split(rows, 0.3, seed)
        texts = {v for r in train for v in r.values()}
        assert not any(r["prompt"] in texts or r["chosen"] in texts for r in held)
        assert not any(t["prompt"].startswith(h["prompt"] + h["chosen"]) for t in train for h in held)
    train, held, dropped = data.split_with(rows, rows[:1])
    assert dropped == 2 and rows[1] not in train


def test_heldout_rows_given_drop_the_training_rows_that_share_with_them(base, tmp_path):
    rows = _repeating_dpo_rows(4, 3)
    given = [{"prompt": "Story 1:", "chosen": " another.", "rejected": " no."}]
    train, held, dropped = data.split_with(rows, given)
    assert dropped == 3 and held == given and all(r["prompt"] != "Story 1:" for r in train)
    with pytest.raises(InvalidInput, match="nothing is left to train on"):
        data.split_with(rows[3:6], given)
    f = tmp_path / "held.jsonl"
    f.write_text(json.dumps({"prompt": "A river and a bread:", "completion": " x."}) + "\n")
    assert data.parse_heldout(str(f), "sft")[1][0]["completion"] == " x."
    with pytest.raises(InvalidInput, match="share of the prompts"):
        data.parse_heldout("half", "sft")
    # a held-out file that leaves no training rows: one error, nothing written
    every = [{"prompt": r["prompt"], "completion": " x."} for r in _sft_rows()]
    with pytest.raises(InvalidInput, match="nothing is left"):
        tune("none", base, _sft_rows(), TuneConfig(kl_budget=5, **FAST), heldout_rows=every)
    with pytest.raises(InvalidInput, match="joined by prompts or texts"):
        tune("none", base, [{"prompt": "same", "completion": f" {i}"} for i in range(4)], TuneConfig(kl_budget=5, **FAST))
    assert not adapters.directory("none").exists() and adapters.list_adapters() == []


def test_an_adapter_records_what_shaped_it(base):
    import hashlib

    rows = _sft_rows()
    record = tune("prov", f"hf:{base}", rows, TuneConfig(kl_budget=50, **{**FAST, "epochs": 1}),
                  source={"file": "/data/sft.jsonl"})
    assert record["base"] == base  # hf:NAME as `loomwork models` prints it, or the bare name
    prov = record["provenance"]
    d = prov["data"]

    def sha(part):
        return hashlib.sha256("".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n"
                                      for r in part).encode()).hexdigest()

    assert d["source"] == {"file": "/data/sft.jsonl"} and d["rows"] == 12 and d["sha256"] == sha(rows)
    used = [json.loads(line) for line in (adapters.directory("prov") / "rows.jsonl").read_text().splitlines()]
    train = [{k: v for k, v in r.items() if k != "split"} for r in used if r["split"] == "train"]
    held = [{k: v for k, v in r.items() if k != "split"} for r in used if r["split"] == "heldout"]
    assert d["train"]["sha256"] == sha(train) and d["heldout"]["sha256"] == sha(held)
    assert sorted(d["heldout"]["prompts"]) == sorted(r["prompt"] for r in held) and len(held) == 3
    assert not {r["prompt"] for r in train} & set(d["heldout"]["prompts"])
    weights = sorted(p for p in Path(base).iterdir() if p.suffix == ".safetensors" or p.name == "config.json")
    want = hashlib.sha256(b"".join(p.name.encode() + b"\0" + hashlib.sha256(p.read_bytes()).hexdigest().encode()
                                   + b"\n" for p in weights)).hexdigest()
    assert prov["base_model"]["sha256"] == want and prov["base_model"]["path"] == str(Path(base).resolve())
    assert prov["seed"] == 0 and prov["libraries"]["torch"] == torch.__version__ and "peft" in prov["libraries"]
    assert "pytest" in prov["command"] or prov["command"]


def test_an_interrupted_run_resumes_to_the_same_adapter_as_an_uninterrupted_one(base):
    from peft.utils import load_peft_weights

    cfg = dict(kl_budget=50, **{**FAST, "epochs": 3})
    whole = tune("whole", base, _sft_rows(), TuneConfig(**cfg))

    def interrupt(event):
        if event["event"] == "step" and event["step"] == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tune("cut", base, _sft_rows(), TuneConfig(**cfg), progress=interrupt)
    assert adapters.describe("cut")["status"] == "interrupted" and adapters.meta("cut")["step"] == 3
    from loomwork.tuning.train import resume

    steps = []
    done = resume("cut", progress=lambda e: steps.append(e.get("step")) if e["event"] == "step" else None)
    assert steps[0] == 4 and done["status"] == "done" and done["step"] == whole["step"]
    a = load_peft_weights(str(adapters.checkpoint("whole")))
    b = load_peft_weights(str(adapters.checkpoint("cut")))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert [p["step"] for p in done["curve"]] == [p["step"] for p in whole["curve"]]
    # a finished run, a run still alive and one made before resuming existed: one error each, nothing changed
    with pytest.raises(InvalidInput, match="only an interrupted or stopped run"):
        resume("whole")
    adapters.write_meta("cut", {**adapters.meta("cut"), "status": "training", "pid": os.getpid()})
    with pytest.raises(InvalidInput, match="still being trained"):
        resume("cut")
    old = {k: v for k, v in adapters.meta("whole").items() if k != "provenance"}
    adapters.write_meta("whole", {**old, "status": "interrupted"})
    with pytest.raises(InvalidInput, match="made before runs could be resumed"):
        resume("whole")
    with pytest.raises(NotFound):
        resume("nobody")


def test_a_run_in_progress_is_listed_and_a_dead_claim_does_not_hold_its_name(base):
    from loomwork.tuning.train import TuneConfig as C, claim, prepare

    train, held, dropped, how = prepare(_sft_rows(), C(kl_budget=1, **FAST))
    claim("busy", base, _sft_rows(), train, held, dropped, how, C(kl_budget=1, **FAST), {"rows": "test"})
    listed = adapters.list_adapters()
    assert [(a["name"], a["status"]) for a in listed] == [("busy", "starting")]
    with pytest.raises(InvalidInput, match="exists already"):
        tune("busy", base, _sft_rows(), TuneConfig(kl_budget=50, **FAST))
    with pytest.raises(InvalidInput, match="being trained"):
        adapters.delete("busy")
    record = json.loads((adapters.directory("busy") / adapters.CLAIM).read_text())
    (adapters.directory("busy") / adapters.CLAIM).write_text(json.dumps({**record, "pid": 2**22 + 777}))
    assert adapters.describe("busy")["status"] == "failed before its first checkpoint"
    assert tune("busy", base, _sft_rows(), TuneConfig(kl_budget=50, **{**FAST, "epochs": 1}))["status"] == "done"


def test_an_exported_adapter_loads_in_plain_transformers_and_peft(base, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from loomwork.backends.hf_load import load
    from loomwork.tuning.export import export

    tune("out", base, _sft_rows(), TuneConfig(kl_budget=50, **FAST))
    loom, tok = load(f"{base}+out")
    ids = torch.tensor([tok.encode("A moon and a tree: zz zz")])
    with torch.no_grad():
        want = loom(input_ids=ids).logits
    peft_dir = export("out", tmp_path / "peft")
    config = json.loads((peft_dir / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(Path(base).resolve())
    assert (peft_dir / "README.md").exists() and json.loads((peft_dir / "loomwork.json").read_text())["name"] == "out"
    assert all((p.stat().st_mode & 0o777) == 0o644 for p in peft_dir.iterdir())
    assert not (peft_dir / "trainer_state.pt").exists()
    plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(peft_dir)).eval()
    merged_dir = export("out", tmp_path / "merged", merged=True)
    whole = AutoModelForCausalLM.from_pretrained(str(merged_dir)).eval()
    with torch.no_grad():
        assert torch.allclose(plain(input_ids=ids).logits, want, atol=1e-4)
        assert torch.allclose(whole(input_ids=ids).logits, want, atol=1e-4)
    with pytest.raises(InvalidInput, match="exists already"):
        export("out", tmp_path / "peft")
    with pytest.raises(InvalidInput, match="does not exist"):
        export("out", tmp_path / "no" / "such")
    with pytest.raises(NotFound):
        export("nope", tmp_path / "x")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "home") == ["merged", "peft", "tiny-base"]
