"""Judge-guided growth's strategies at an equal budget, on the packaged models (docs/graders.md has the table).

    .venv/bin/python scripts/grow_compare.py [--seeds 4] [--nodes 24] [--out docs/graders] [--docs]

From "The old lighthouse keeper climbed the stairs and", Gemma 3 270M base grows the tree with each strategy at
the same budget (--nodes new nodes of 16 tokens, branching 3), guided by the proxy of scripts/goodhart_demo.py
(a judge Gemma scores: does the passage mention the sea?). Each run's answer is a node whose whole path the grader
chose and was charged for: weave's beam node; for beam and tilted, the last node they picked to go on from (any
choice among the picks by a score would be a selection nobody charged). The answer's path is then scored by the held-out gold judge (SmolLM2-135M-Instruct: is it well written
and coherent?), and its grader KL is the sum of the recorded choices on that path (the ledger's grader line).
"uniform" is a plain Gumbel beam (weave, lookahead 1) under a grader that scores every node the same: a random
descent, every commit uniform, 0 bits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from goodhart_demo import GOLD, PROXY  # noqa: E402

PROMPT = "The old lighthouse keeper climbed the stairs and"
STRATEGIES = {  # name: (strategy, grader, extra settings)
    "uniform": ("weave", "flat", {"beam": 1, "lookahead": 1}),
    "beam": ("beam", "mentions-sea", {"beam": 1}),
    "tilted": ("tilted", "mentions-sea", {"beam": 1, "temperature": 1.0}),
    "weave": ("weave", "mentions-sea", {"beam": 1, "temperature": 1.0, "lookahead": 2}),
}


def flat(text: str, context: str) -> float:
    return 0.0


async def one(store, grader, gold, proxy, root_id, backend, strategy, extra, nodes, seed):
    from loomwork import curation
    from loomwork.backends import SamplingParams
    from loomwork.graders.grow import grow
    from loomwork.graders.scoring import score_nodes

    t0 = time.time()
    r = await grow(store, root_id, backend, grader, SamplingParams(max_tokens=16, seed=seed), budget_nodes=nodes,
                   branching=3, strategy=strategy, seed=seed, **extra)
    chosen = curation.latest_choices(store, store.node(root_id).tree_id)
    picks = [c["node"] for c in r["choices"]]
    # the strategy's own last word (choosing among its picks by a score here would be a selection nobody charged)
    answer = r["beam"][0] if strategy == "weave" else (picks[-1] if picks else root_id)
    path = store.path(answer)
    bits = sum((chosen[n.id].pressure or {}).get("kl_bits", 0.0) for n in path if n.id in chosen)
    got = {**(await score_nodes(store, gold, [answer]))[answer], "proxy": (await score_nodes(store, proxy, [answer]))[answer]["score"]}
    return {"strategy": strategy, "seed": seed, "answer": answer, "depth": len(path) - 1, "kl_bits": bits,
            "gold": got["score"], "proxy": got["proxy"], "nodes": r["nodes"], "tokens": r["tokens"],
            "text": "".join(n.text for n in path), "seconds": time.time() - t0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--nodes", type=int, default=24)
    ap.add_argument("--out", default=str(ROOT / "docs" / "graders"))
    ap.add_argument("--docs", action="store_true", help="rewrite the table in docs/graders.md from this run")
    ap.add_argument("--render", action="store_true", help="only rewrite docs/graders.md from --out's JSON (no run)")
    args = ap.parse_args()
    if args.render:
        report = json.loads((Path(args.out) / "grow-compare.json").read_text(encoding="utf-8"))
        write_docs(report)
        return
    os.environ["LOOMWORK_HOME"] = tempfile.mkdtemp(prefix="loomwork-grow-compare-")
    os.environ["PYTHONPATH"] = str(ROOT / "scripts")
    from loomwork import Store, ops
    from loomwork.backends import get_backend
    from loomwork.backends.registry import close_all
    from loomwork.graders import registry

    store = Store.open()
    graders = {"mentions-sea": registry.create(store, "mentions-sea", "judge", model="hf:gemma-3-270m", template=PROXY),
               "flat": registry.create(store, "flat", "callable", target="grow_compare:flat")}
    gold = registry.create(store, "coherent", "judge", model="hf:smollm2-135m-instruct", template=GOLD)
    t0 = time.time()

    async def run():
        backend = get_backend("hf:gemma-3-270m")
        runs = []
        try:
            for seed in range(1, args.seeds + 1):
                for name, (strategy, grader, extra) in STRATEGIES.items():
                    _t, root = ops.new_tree(store, PROMPT)
                    out = await one(store, graders[grader], gold, graders["mentions-sea"], root.id, backend,
                                    strategy, extra, args.nodes, seed)
                    runs.append({"name": name, **out})
                    print(f"{name:8} seed {seed}: gold {out['gold']:.2f}, proxy {out['proxy']:.2f}, "
                          f"{out['kl_bits']:.2f} bits, depth {out['depth']}, {out['seconds']:.0f} s", flush=True)
        finally:
            await close_all()
        return runs

    runs = asyncio.run(run())
    report = {"prompt": PROMPT, "nodes": args.nodes, "branching": 3, "max_tokens": 16, "seeds": args.seeds,
              "strategies": {k: {"strategy": s, "grader": g, **e} for k, (s, g, e) in STRATEGIES.items()},
              "runs": runs, "seconds": time.time() - t0}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "grow-compare.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(table(report))
    if args.docs:
        write_docs(report)


def write_docs(report: dict) -> None:
    doc = ROOT / "docs" / "graders.md"
    text = doc.read_text(encoding="utf-8")
    a, b = text.index(MARK_BEGIN) + len(MARK_BEGIN), text.index(MARK_END)
    doc.write_text(text[:a] + "\n" + table(report) + "\n" + text[b:], encoding="utf-8")


MARK_BEGIN, MARK_END = "<!-- grow_compare.py: begin -->", "<!-- grow_compare.py: end -->"


def reading(report: dict) -> str:
    """What the table says, computed from the runs (so it changes with them)."""
    mean = {name: {k: statistics.mean(r[k] for r in report["runs"] if r["name"] == name and r[k] is not None)
                   for k in ("kl_bits", "proxy", "gold")} for name in report["strategies"]}
    by_kl = sorted((n for n in mean if n != "uniform"), key=lambda n: -mean[n]["kl_bits"])
    up = [n for n in by_kl if mean[n]["proxy"] > mean["uniform"]["proxy"]]
    gold_up = [n for n in by_kl if mean[n]["gold"] > mean["uniform"]["gold"]]
    proxy_follows = [mean[n]["proxy"] for n in by_kl] == sorted((mean[n]["proxy"] for n in by_kl), reverse=True)
    return (f"The grader's pressure on the answer's path, most first: {', '.join(by_kl)}. "
            + (f"{', '.join(up).capitalize()} raised the proxy above the uniform descent's mean"
               + (" in the order of their pressure" if proxy_follows and len(up) == len(by_kl) else "") + "; "
               if up else "None raised the proxy above the uniform descent's mean; ")
            + (f"the held-out gold score rose above it only for {', '.join(gold_up)}" if gold_up else
               "none raised the held-out gold score above it: what the proxy rewards (the sea) is not what the gold "
               "judge rewards (coherence)")
            + f" (means of {report['seeds']} seeds; the ranges above overlap widely at this size, and the answers' "
              "depths differ: the same budget buys a uniform descent more depth than a search).")


def table(report: dict) -> str:
    """The docs' table, from the run (docs/graders.md between the markers): per strategy, the mean over seeds and
    the smallest and largest in brackets."""
    def cell(values, digits=2):
        values = [v for v in values if v is not None]
        if not values:
            return "—"
        return f"{statistics.mean(values):.{digits}f} [{min(values):.{digits}f}, {max(values):.{digits}f}]"

    lines = ["| strategy | grader KL on the answer's path (bits) | proxy: mentions the sea | gold: coherent | depth |",
             "|---|---|---|---|---|"]
    for name in report["strategies"]:
        rs = [r for r in report["runs"] if r["name"] == name]
        lines.append(f"| {name} | {cell([r['kl_bits'] for r in rs])} | {cell([r['proxy'] for r in rs])} | "
                     f"{cell([r['gold'] for r in rs])} | {cell([r['depth'] for r in rs], 1)} |")
    lines += ["", reading(report)]
    n = len(report["runs"]) // max(len(report["strategies"]), 1)
    lines += ["", f"{report['nodes']} new nodes of {report['max_tokens']} tokens per run (branching "
              f"{report['branching']}), {n} seeds per strategy; mean [min, max]; scores are log-odds (nats). "
              f"{report['seconds']:.0f} s in all on the 2-core CPU."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
