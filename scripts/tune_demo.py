"""Tuning, shown honestly on the packaged base model: a curated tree set made by a fixed rule, SFT and DPO at the
same KL budget, and the mode-collapse figures of base, SFT and DPO side by side (docs/tuning.md has the results).

    .venv/bin/python scripts/tune_demo.py [--budget 0.3] [--prompts 24] [--samples 6] [--out tune-demo.json]

1. For each of --prompts story openings, the base model (Gemma 3 270M) samples --samples continuations. A fixed
   rule stands in for the person: it prefers dialogue (the most double quotes; ties: the shorter text). The rule's
   pick is recorded as a choice (preference data: it against each of its siblings) and bookmarked (SFT data).
2. The tree's own exports train two adapters, SFT and DPO, with the same KL budget, seed and held-out prompts.
3. Reported: held-out loss on the chosen texts before/after, KL spent, the rule's score on fresh samples from held-out
   prompts (how often a sample has dialogue), and the lens's figures on the random-number and creative suites.
Runs in a temporary LOOMWORK_HOME unless --home is given. CPU: about 15 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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


async def rule_rate(backend, prompts: list[str], samples: int, seed: int) -> float:
    from loomwork.backends.base import SamplingParams

    hits = total = 0
    for i, p in enumerate(prompts):
        done = await backend.complete(p, SamplingParams(n=samples, max_tokens=40, seed=seed + 1000 + i))
        hits += sum(dialogue(c.text) for c in done.completions)
        total += len(done.completions)
    return hits / total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=0.3, help="KL budget, bits per token (both methods)")
    ap.add_argument("--prompts", type=int, default=24)
    ap.add_argument("--samples", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--home", help="LOOMWORK_HOME to use (default: a temporary one)")
    ap.add_argument("--out", default="tune-demo.json")
    args = ap.parse_args()
    os.environ["LOOMWORK_HOME"] = args.home or tempfile.mkdtemp(prefix="loomwork-tune-demo-")

    from loomwork import Store
    from loomwork.backends import get_backend
    from loomwork.backends.registry import close_all
    from loomwork.tuning.data import rows_from_tree, split
    from loomwork.tuning.report import tuned_vs_base
    from loomwork.tuning.train import TuneConfig, tune

    store = Store.open()
    base = get_backend("hf:gemma-3-270m")
    prompts = OPENINGS[: args.prompts]
    t0 = time.time()
    tree_ids = asyncio.run(build(store, base, prompts, args.samples, args.seed))
    print(f"curated tree built in {time.time() - t0:.0f} s", flush=True)
    results = {"budget_bits": args.budget, "prompts": len(prompts), "samples": args.samples, "methods": {}}
    held_prompts = None
    for method in ("sft", "dpo"):
        rows = [r for t in tree_ids for r in rows_from_tree(store, t, method)]
        if held_prompts is None:
            by_prompt = sorted({r["prompt"] for r in rows})
            _train, held = split([{"prompt": p} for p in by_prompt], 0.25, args.seed)
            held_prompts = sorted(h["prompt"] for h in held)
        # the same held-out prompts for both methods: rows of a held-out prompt never train
        train = [r for r in rows if r["prompt"] not in held_prompts]
        held = [r for r in rows if r["prompt"] in held_prompts]
        cfg = TuneConfig(method=method, kl_budget=args.budget, lora_r=8, lora_alpha=16, epochs=args.epochs, lr=3e-4,
                         batch_size=4, eval_every=4, seed=args.seed, kl_prompts=4, kl_samples=4, kl_tokens=24,
                         max_length=256)
        t0 = time.time()
        record = tune(f"dialogue-{method}", "gemma-3-270m", train, cfg, heldout_rows=held,
                      progress=lambda e: print(json.dumps(e), flush=True) if e["event"] != "step" else None)
        results["methods"][method] = {"rows": len(rows), "seconds": round(time.time() - t0),
                                      **{k: record.get(k) for k in ("status", "step", "kl_bits", "kl_se",
                                                                   "heldout_loss_before", "heldout_loss")}}
    held_openings = list(held_prompts)

    async def measure():
        out = {"rule_rate": {}}
        try:
            for ref in ("hf:gemma-3-270m", "hf:gemma-3-270m+dialogue-sft", "hf:gemma-3-270m+dialogue-dpo"):
                out["rule_rate"][ref] = await rule_rate(get_backend(ref), held_openings, 8, args.seed)
            for method in ("sft", "dpo"):
                rep = await tuned_vs_base(f"dialogue-{method}", samples=8, seed=args.seed)
                out[method] = {s: v["summary"] for s, v in rep["suites"].items()}
        finally:
            await close_all()
        return out

    results["measured"] = asyncio.run(measure())
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
