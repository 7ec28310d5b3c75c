"""Tuning, shown honestly on the packaged base model: a curated tree set made by a fixed rule, SFT and DPO at the
same KL budget, and the mode-collapse figures of base, SFT and DPO side by side (docs/tuning.md has the results).

    .venv/bin/python scripts/tune_demo.py [--budget 0.3] [--prompts 24] [--samples 6] [--docs]

1. For each of --prompts story openings, the base model (Gemma 3 270M) samples --samples continuations. A fixed
   rule stands in for the person: it prefers dialogue (the most double quotes; ties: the shorter text). The rule's
   pick is recorded as a choice (preference data: it against each of its siblings) and bookmarked (SFT data).
2. The trees' own exports train two adapters, SFT and DPO, with the same KL budget and seed; SFT's split by prompt
   holds out a quarter of the openings, and DPO holds out the same openings (none of their rows is trained on).
   A reward model is trained on the preference rows with the same openings held out.
3. Reported: held-out loss on the chosen texts before/after, KL spent, the rule's score on fresh samples from the
   held-out openings (how often a sample has dialogue, with a 95% interval resampling openings), the reward
   model's pairwise accuracy on training and held-out pairs, the lens's figures on the random-number and creative
   suites, and what each part cost. --docs writes the table into docs/tuning.md.
Runs in a temporary LOOMWORK_HOME unless --home is given. CPU: about 20 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

OPENINGS = [
    "The door opened and Maria looked up.", "He put down the letter and turned to his brother.",
    "The captain gathered the crew on deck.", "Nobody spoke until the train left the station.",
    "The old woman at the market held up a melon.", "When the lights came back on, the room was empty.",
    "The teacher closed the book and smiled at the class.", "Rain hammered the roof of the farmhouse.",
    "The detective studied the muddy footprints.", "At the top of the hill the two friends stopped to rest.",
    "The baker was already awake when the knock came.", "The robot tilted its head at the child.",
    "She found the key under the third stone.", "The king's messenger arrived at dawn.",
    "The phone rang twice and then stopped.", "They had been walking for hours when the road ended.",
    "The museum guard noticed the painting had moved.", "Grandfather lit his pipe and leaned back.",
    "The ship's cat sat on the map.", "Snow had covered the village overnight.",
    "The new neighbour waved from across the fence.", "The violinist missed the first note.",
    "A stranger sat down at the end of the bar.", "The lighthouse keeper heard a shout from the rocks.",
    "The twins argued all the way to school.", "The mayor tapped the microphone twice.",
    "The fisherman pulled up an empty net.", "The librarian found a note inside the returned book.",
]


def score(text: str) -> tuple[int, int]:
    """The rule standing in for a person: dialogue first (double quotes), then brevity."""
    return (text.count('"') + text.count("“") + text.count("”"), -len(text))


def dialogue(text: str) -> bool:
    return score(text)[0] > 0


async def build(store, backend, prompts: list[str], samples: int, seed: int) -> list[str]:
    """A tree per opening: its samples, the rule's pick chosen (a recorded choice) and bookmarked."""
    from loomwork import curation, ops
    from loomwork.backends.base import SamplingParams

    trees = []
    for i, opening in enumerate(prompts):
        tree, root = ops.new_tree(store, opening)
        kids = await ops.expand(store, root.id, backend, SamplingParams(n=samples, max_tokens=40, seed=seed + i))
        best = max(kids, key=lambda k: score(k.text))
        curation.record_choice(store, best.id)
        ops.set_bookmark(store, best.id)
        trees.append(tree.id)
    return trees


async def rule_hits(backend, prompts: list[str], samples: int, seed: int) -> list[list[bool]]:
    """Per held-out opening, whether each fresh sample has dialogue (the same seeds for every model)."""
    from loomwork.backends.base import SamplingParams

    out = []
    for i, p in enumerate(prompts):
        done = await backend.complete(p, SamplingParams(n=samples, max_tokens=40, seed=seed + 1000 + i))
        out.append([dialogue(c.text) for c in done.completions])
    return out


def rate_with_interval(hits: list[list[bool]], seed: int, draws: int = 2000) -> dict:
    """The share of samples with dialogue and its 95% interval, resampling openings (samples of one opening are
    not independent of each other)."""
    rng = random.Random(seed)
    flat = [h for per in hits for h in per]
    rates = []
    for _ in range(draws):
        pick = [hits[rng.randrange(len(hits))] for _ in hits]
        rates.append(sum(sum(p) for p in pick) / sum(len(p) for p in pick))
    rates.sort()
    return {"rate": sum(flat) / len(flat), "ci": [rates[int(0.025 * draws)], rates[int(0.975 * draws)]],
            "samples": len(flat)}


def timings(events: list[dict]) -> dict:
    """What each part of a run cost, from its own events."""
    evals = [e["seconds"] for e in events if e["event"] == "eval"]
    steps = [e["seconds"] for e in events if e["event"] == "step"]
    loaded = next((e["seconds"] for e in events if e["event"] == "loaded"), None)
    return {"load_s": loaded, "eval_s": sum(evals) / len(evals) if evals else None, "evals": len(evals),
            "step_s": sum(steps) / len(steps) if steps else None, "steps": len(steps)}


MARK_BEGIN, MARK_END = "<!-- tune_demo.py: begin -->", "<!-- tune_demo.py: end -->"


def table(r: dict) -> str:
    """The docs' table, written from the run's results (docs/tuning.md between the markers)."""
    m, rate = r["methods"], r["measured"]["rule_rate"]
    refs = ("hf:gemma-3-270m", "hf:gemma-3-270m+dialogue-sft", "hf:gemma-3-270m+dialogue-dpo")

    def pct(ref):
        x = rate[ref]
        return f"**{100 * x['rate']:.0f}%** [{100 * x['ci'][0]:.0f}, {100 * x['ci'][1]:.0f}]"

    def stop(k):
        x = m[k]
        if x["status"].startswith("stopped at"):
            return f"at the budget, step {x['stopped_at']['step']} (KL {x['stopped_at']['kl_bits']:.2f}); kept step {x['step']}"
        return f"{x['status']} at step {x['step']}"

    # each report has the base and one tuned model, by model name
    rn = {**r["measured"]["sft"]["random-numbers"], **r["measured"]["dpo"]["random-numbers"]}
    cw = {**r["measured"]["sft"]["creative-writing"], **r["measured"]["dpo"]["creative-writing"]}
    lines = [
        "| | base | SFT | DPO |", "|---|---|---|---|",
        f"| training rows / prompts | | {m['sft']['train_rows']} / {m['sft']['train_prompts']} | "
        f"{m['dpo']['train_rows']} / {m['dpo']['train_prompts']} |",
        f"| held-out rows / prompts (never trained on) | | {m['sft']['heldout_rows']} / {m['sft']['heldout_prompts']} | "
        f"{m['dpo']['heldout_rows']} / {m['dpo']['heldout_prompts']} |",
        f"| stopped | | {stop('sft')} | {stop('dpo')} |",
        f"| KL(tuned ‖ base) spent, bits/token ± s.e. | 0 | {m['sft']['kl_bits']:.3f} ± {m['sft']['kl_se']:.3f} | "
        f"{m['dpo']['kl_bits']:.3f} ± {m['dpo']['kl_se']:.3f} |",
        f"| held-out loss of the chosen texts, nats/token | {m['sft']['heldout_loss_before']:.3f} | "
        f"{m['sft']['heldout_loss']:.3f} | {m['dpo']['heldout_loss']:.3f} |",
        f"| **samples with dialogue, held-out openings** ({rate[refs[0]]['samples']} each; 95% interval by opening) | "
        + " | ".join(pct(ref) for ref in refs) + " |",
        "| random-number probes: mean entropy, bits (mean top-1) | "
        + " | ".join(f"{rn[ref]['entropy']:.2f} ({rn[ref]['top1']:.3f})" for ref in refs) + " |",
        "| creative prompts: mean distinct-2 (unique samples) | "
        + " | ".join(f"{cw[ref]['distinct_2']:.2f} ({100 * cw[ref]['unique']:.0f}%)" for ref in refs) + " |",
    ]
    rm = r["reward_model"]
    t_sft, t_dpo = m["sft"]["timings"], m["dpo"]["timings"]
    lines += ["", "What each part cost on the 2-core CPU (from the runs' own events):", "",
              "| step | seconds |", "|---|---|",
              f"| the curated trees ({r['prompts']} openings × {r['samples']} samples × 40 tokens) | {r['build_s']:.0f} |",
              f"| loading the base for tuning | {t_sft['load_s']:.1f} |",
              f"| one KL evaluation ({r['kl_eval']}) and the held-out loss | {t_sft['eval_s']:.1f} (SFT), "
              f"{t_dpo['eval_s']:.1f} (DPO) |",
              f"| one training step (batch 4) | {t_sft['step_s']:.2f} (SFT), {t_dpo['step_s']:.2f} (DPO, four passes) |",
              f"| the whole run | {m['sft']['seconds']} (SFT, {t_sft['steps']} steps, {t_sft['evals']} evaluations), "
              f"{m['dpo']['seconds']} (DPO, {t_dpo['steps']} steps, {t_dpo['evals']} evaluations) |",
              f"| a reward model (SmolLM2-135M, {rm['train_rows']} pairs, 1 epoch), trained | {rm['seconds']['training']:.0f} |",
              f"| its pairwise accuracy scored on {rm['train_rows']} + {rm['heldout_rows']} pairs, saved | "
              f"{rm['seconds']['all'] - rm['seconds']['training']:.0f} |"]
    return "\n".join(lines)


def write_docs(results: dict) -> None:
    doc = ROOT / "docs" / "tuning.md"
    text = doc.read_text(encoding="utf-8")
    a, b = text.index(MARK_BEGIN) + len(MARK_BEGIN), text.index(MARK_END)
    doc.write_text(text[:a] + "\n" + table(results) + "\n" + text[b:], encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=0.3, help="KL budget, bits per token (both methods)")
    ap.add_argument("--prompts", type=int, default=24)
    ap.add_argument("--samples", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--home", help="LOOMWORK_HOME to use (default: a temporary one)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "tuning" / "tune-demo.json"))
    ap.add_argument("--docs", action="store_true", help="rewrite the table in docs/tuning.md from this run")
    args = ap.parse_args()
    os.environ["LOOMWORK_HOME"] = args.home or tempfile.mkdtemp(prefix="loomwork-tune-demo-")

    from loomwork import Store
    from loomwork.backends import get_backend
    from loomwork.backends.registry import close_all
    from loomwork.graders import reward
    from loomwork.tuning.data import rows_from_tree
    from loomwork.tuning.report import tuned_vs_base
    from loomwork.tuning.train import TuneConfig, tune

    store = Store.open()
    base = get_backend("hf:gemma-3-270m")
    prompts = OPENINGS[: args.prompts]
    t0 = time.time()
    tree_ids = asyncio.run(build(store, base, prompts, args.samples, args.seed))
    results = {"budget_bits": args.budget, "prompts": len(prompts), "samples": args.samples,
               "build_s": time.time() - t0, "kl_eval": "4 held-out prompts × 4 samples × 24 tokens", "methods": {}}
    print(f"curated trees built in {results['build_s']:.0f} s", flush=True)
    asyncio.run(close_all())  # the tuning loads its own copy
    held_prompts: list[str] | None = None
    rows_of = {m: [r for t in tree_ids for r in rows_from_tree(store, t, m)] for m in ("sft", "dpo")}
    for method in ("sft", "dpo"):
        rows = rows_of[method]
        cfg = TuneConfig(method=method, kl_budget=args.budget, lora_r=8, lora_alpha=16, epochs=args.epochs, lr=3e-4,
                         batch_size=4, eval_every=4, seed=args.seed, kl_prompts=4, kl_samples=4, kl_tokens=24,
                         max_length=256, heldout=0.25)
        # SFT splits by prompt; DPO holds out the same openings (every row of them), so both are judged alike
        held = None if held_prompts is None else [r for r in rows if r["prompt"] in held_prompts]
        events: list[dict] = []
        t0 = time.time()
        record = tune(f"dialogue-{method}", "hf:gemma-3-270m", rows, cfg, heldout_rows=held,
                      source={"trees": tree_ids, "database": store.label, "script": "scripts/tune_demo.py"},
                      progress=lambda e, seen=events: (seen.append(e), print(json.dumps(e), flush=True)
                                                       if e["event"] != "step" else None))
        d = record["provenance"]["data"]
        held_prompts = held_prompts or d["heldout"]["prompts"]
        results["methods"][method] = {
            "rows": len(rows), "seconds": round(time.time() - t0), "timings": timings(events),
            "train_rows": d["train"]["rows"], "train_prompts": d["train"]["prompts"], "heldout_rows": d["heldout"]["rows"],
            "heldout_prompts": len(d["heldout"]["prompts"]), "data_sha256": d["sha256"],
            **{k: record.get(k) for k in ("status", "step", "kl_bits", "kl_se", "heldout_loss_before", "heldout_loss",
                                          "stopped_at")}}
    results["heldout_openings"] = held_prompts
    # a reward model on the same preference rows and the same held-out openings: accuracy where it was not trained
    dpo_held = [r for r in rows_of["dpo"] if r["prompt"] in held_prompts]
    results["reward_model"] = reward.train("dialogue-rm", "smollm2-135m-instruct", rows_of["dpo"], epochs=1,
                                           heldout_rows=dpo_held, seed=args.seed,
                                           progress=lambda m: print(m, flush=True))

    async def measure():
        out = {"rule_rate": {}}
        try:
            for ref in ("hf:gemma-3-270m", "hf:gemma-3-270m+dialogue-sft", "hf:gemma-3-270m+dialogue-dpo"):
                hits = await rule_hits(get_backend(ref), held_prompts, 8, args.seed)
                out["rule_rate"][ref] = rate_with_interval(hits, args.seed)
            for method in ("sft", "dpo"):
                rep = await tuned_vs_base(f"dialogue-{method}", samples=8, seed=args.seed)
                out[method] = {s: v["summary"] for s, v in rep["suites"].items()}
        finally:
            await close_all()
        return out

    results["measured"] = asyncio.run(measure())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(table(results))
    if args.docs:
        write_docs(results)


if __name__ == "__main__":
    main()
