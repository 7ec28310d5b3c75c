"""The lens's figures in the docs, from runs (docs/lens.md's results and reading; docs/metrics.md's control-token
pressure). Nothing in those passages is typed by hand: `--docs` rewrites them from the JSON this writes, and
tests/test_docs.py checks that the docs show what the committed JSON says.

    .venv/bin/python scripts/lens_demo.py [--docs]

1. `loomwork compare -m hf:gemma-3-270m -m hf:smollm2-135m-instruct --suite random-numbers --seed 0`, as a
   library call: docs/lens/report.json and the plots beside it; the table and the reading in docs/lens.md.
2. Gemma 3 270M base sampled at temperature 1 with no truncation (4 prompts × 4 samples × 16 tokens): each
   token's decoding KL, which is then only the control tokens' mass loomwork never samples (docs/metrics.md,
   "Decoding settings"); docs/lens/control-mass.json and the sentence in docs/metrics.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
OUT = ROOT / "docs" / "lens"
MODELS = ["hf:gemma-3-270m", "hf:smollm2-135m-instruct"]
NAMES = {"hf:gemma-3-270m": "Gemma 3 270M base", "hf:smollm2-135m-instruct": "SmolLM2 135M Instruct"}
PROMPTS = ["The old lighthouse keeper climbed the stairs and", "Question: What is the capital of France?\nAnswer:",
           "def fibonacci(n):", "Dear diary, today"]
MARKS = {"table": ("<!-- lens_demo.py table: begin -->", "<!-- lens_demo.py table: end -->"),
         "reading": ("<!-- lens_demo.py reading: begin -->", "<!-- lens_demo.py reading: end -->"),
         "control": ("<!-- lens_demo.py control: begin -->", "<!-- lens_demo.py control: end -->")}


async def compare() -> dict:
    from loomwork.backends import get_backend
    from loomwork.backends.registry import close_all
    from loomwork.lens import suite as suites
    from loomwork.lens.report import run_suite

    t0 = time.time()
    try:
        report = await run_suite([get_backend(m) for m in MODELS], suites.load("random-numbers"), 16, 0, None, True,
                                 None, lambda _m: None)
    finally:
        await close_all()
    report["seconds"] = time.time() - t0
    return report


async def control_mass() -> dict:
    from loomwork import Store, ops
    from loomwork.backends import SamplingParams, get_backend
    from loomwork.backends.registry import close_all

    store = Store.open()
    bits = []
    try:
        backend = get_backend(MODELS[0])
        for i, prompt in enumerate(PROMPTS):
            _t, root = ops.new_tree(store, prompt)
            for kid in await ops.expand(store, root.id, backend, SamplingParams(n=4, max_tokens=16, seed=i + 1)):
                bits += [t.decode_kl / math.log(2) for t in kid.tokens if t.decode_kl is not None]
    finally:
        await close_all()
    return {"model": MODELS[0], "prompts": PROMPTS, "samples_per_prompt": 4, "max_tokens": 16, "temperature": 1.0,
            "positions": len(bits), "bits": bits}


def table(report: dict) -> str:
    lines = ["| probe | model | top-1 | p(top-1) | H (bits) | H / Hmax | mass on set |", "|---|---|---|---|---|---|---|"]
    for p in report["probes"]:
        for i, r in enumerate(p["results"]):
            rel = "—" if r["entropy_relative"] is None else f"{r['entropy_relative']:.2f}"
            lines.append(f"| {p['id'] if i == 0 else ''} | {NAMES.get(r['model'], r['model'])} | {r['top1'].strip()} | "
                         f"{r['top1_prob']:.3f} | {r['entropy_bits']:.2f} | {rel} | {r['mass_on_set']:.3f} |")
    lines += ["", f"{report['seconds']:.0f} s for both models on the 2-core CPU, model loading included."]
    return "\n".join(lines)


def _by_model(report: dict, probe: dict) -> dict:
    return {r["model"]: r for r in probe["results"]}


def reading(report: dict) -> str:
    """What the table says, computed from it: which model answers inside the set more often and where not, and
    which is more collapsed on which probes."""
    base, tuned = MODELS
    probes = report["probes"]
    more_mass = [p["id"] for p in probes if _by_model(report, p)[tuned]["mass_on_set"] > _by_model(report, p)[base]["mass_on_set"]]
    less_mass = [p["id"] for p in probes if p["id"] not in more_mass]
    peakier_tuned = [p["id"] for p in probes
                     if _by_model(report, p)[tuned]["top1_prob"] > _by_model(report, p)[base]["top1_prob"]]
    peakier_base = [p["id"] for p in probes if p["id"] not in peakier_tuned]

    def masses(model, ids):
        vals = [_by_model(report, p)[model]["mass_on_set"] for p in probes if p["id"] in ids]
        return f"{min(vals):.2f}–{max(vals):.2f}" if len(vals) > 1 else f"{vals[0]:.2f}" if vals else "—"

    def listed(ids):
        return ", ".join(ids) if ids else "none"

    out = [f"**What the table says.** The instruct model puts more of its mass inside the answer set on "
           f"{len(more_mass)} of {len(probes)} probes ({listed(more_mass)}: {masses(tuned, more_mass)} against "
           f"{masses(base, more_mass)})"]
    if less_mass:
        detail = "; ".join(f"{i}: base {_by_model(report, p)[base]['mass_on_set']:.3f}, instruct "
                           f"{_by_model(report, p)[tuned]['mass_on_set']:.3f}" for p in probes for i in [p["id"]]
                           if i in less_mass)
        out.append(f", but not on {listed(less_mass)} ({detail})")
    out.append(f". Its top answer is the more probable one (the peakier distribution) on {listed(peakier_tuned)}; "
               f"the base model's on {listed(peakier_base)}.")
    out.append(" These two models differ in far more than tuning: family and training data (Gemma 3 vs SmolLM2), "
               "size (270M vs 135M), tokenizer and vocabulary (262k vs 49k), and quantisation before conversion "
               "(Q4_K_M vs Q4_1). Only a base model compared with its own tuned version isolates the effect of "
               "tuning; with these two packages the table shows what the instrument measures, not a clean tuning "
               "effect.")
    return "".join(out)


def control(data: dict) -> str:
    bits = data["bits"]
    mean = sum(bits) / len(bits)
    return (f"measured on Gemma 3 270M at {mean:.4f} bits per token on average over {len(bits)} positions (at most "
            f"{max(bits):.3f}; {len(data['prompts'])} prompts × {data['samples_per_prompt']} samples × "
            f"{data['max_tokens']} tokens, docs/lens/control-mass.json), about {64 * mean:.2f} bits over a 64-token "
            f"node")


def render(path: Path, parts: dict[str, str]) -> str:
    text = path.read_text(encoding="utf-8")
    for key, body in parts.items():
        begin, end = MARKS[key]
        a, b = text.index(begin) + len(begin), text.index(end)
        sep = "\n" if key != "control" else ""
        text = text[:a] + sep + body + sep + text[b:]
    return text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", action="store_true", help="rewrite the passages in docs/lens.md and docs/metrics.md")
    args = ap.parse_args()
    os.environ["LOOMWORK_HOME"] = tempfile.mkdtemp(prefix="loomwork-lens-demo-")
    from loomwork.lens.plots import write_plots

    report = asyncio.run(compare())
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    write_plots(report, OUT)
    mass = asyncio.run(control_mass())
    (OUT / "control-mass.json").write_text(json.dumps(mass, indent=1) + "\n", encoding="utf-8")
    print(table(report), reading(report), control(mass), sep="\n\n")
    if args.docs:
        lens, metrics = ROOT / "docs" / "lens.md", ROOT / "docs" / "metrics.md"
        lens.write_text(render(lens, {"table": table(report), "reading": reading(report)}), encoding="utf-8")
        metrics.write_text(render(metrics, {"control": control(mass)}), encoding="utf-8")


if __name__ == "__main__":
    main()
