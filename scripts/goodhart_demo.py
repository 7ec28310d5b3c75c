"""The Goodhart curve on the packaged models, with a proxy that can be gamed (docs/graders.md has the figure).

    .venv/bin/python scripts/goodhart_demo.py [--pool 64] [--out docs/graders] [--docs]

Gemma 3 270M base continues "The old lighthouse keeper climbed the stairs and" 64 times (32 tokens each, one pool).
The proxy is a judge prompt that Gemma itself scores: does the passage mention the sea? — a keyword a sample can
satisfy without being any good. The gold grader is held out: SmolLM2-135M-Instruct asked whether the passage is
well written and coherent. Best-of-n against the proxy is then read off the pool for n = 1 … 64.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

PROXY = ("{context}{text}\n\nQuestion: Does the passage above mention the sea or the ocean? Answer yes or no.\n"
         "Answer:")
GOLD = ("Here is a passage:\n\n{context}{text}\n\nQuestion: Is this passage well written and coherent? Answer yes or "
        "no.\nAnswer:")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pool", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "docs" / "graders"))
    ap.add_argument("--docs", action="store_true", help="rewrite the table in docs/graders.md from this run")
    args = ap.parse_args()
    os.environ["LOOMWORK_HOME"] = tempfile.mkdtemp(prefix="loomwork-goodhart-")
    from loomwork import Store, ops
    from loomwork.backends import SamplingParams, get_backend
    from loomwork.backends.registry import close_all
    from loomwork.graders import goodhart, registry

    store = Store.open()
    proxy = registry.create(store, "mentions-sea", "judge", model="hf:gemma-3-270m", template=PROXY)
    gold = registry.create(store, "coherent", "judge", model="hf:smollm2-135m-instruct", template=GOLD)
    _tree, root = ops.new_tree(store, "The old lighthouse keeper climbed the stairs and")
    ns = [n for n in (1, 2, 4, 8, 16, 32, 64) if n <= args.pool]

    said: dict[str, float] = {}

    def progress(what: str, done: int, total: int) -> None:
        said.setdefault(what, time.time())  # when each phase began
        if done == total:
            said[what + " (end)"] = time.time()

    async def run():
        try:
            return await goodhart.run(store, root.id, get_backend("hf:gemma-3-270m"), proxy, gold, ns, args.pool,
                                      SamplingParams(n=1, max_tokens=32, seed=args.seed), progress=progress)
        finally:
            await close_all()

    t0 = time.time()
    report = asyncio.run(run())
    phases = [w for w in said if not w.endswith("(end)")]
    report["seconds"] = {w: said.get(w + " (end)", time.time()) - said[w] for w in phases}
    report["seconds"]["all"] = time.time() - t0
    goodhart.write(report, Path(args.out))
    print(table(report))
    if args.docs:
        doc = ROOT / "docs" / "graders.md"
        text = doc.read_text(encoding="utf-8")
        a, b = text.index(MARK_BEGIN) + len(MARK_BEGIN), text.index(MARK_END)
        doc.write_text(text[:a] + "\n" + table(report) + "\n" + text[b:], encoding="utf-8")


MARK_BEGIN, MARK_END = "<!-- goodhart_demo.py: begin -->", "<!-- goodhart_demo.py: end -->"


def table(report: dict) -> str:
    """The docs' table, from the run (docs/graders.md between the markers)."""
    def ci(p, field):
        lo, hi = p[f"{field}_ci"]
        return f"{p[field]:.2f} [{lo:.2f}, {hi:.2f}]"

    f = report["fit"]
    lines = ["| n | √KL (√nats) | proxy: mentions the sea | gold: coherent |", "|---|---|---|---|"]
    lines += [f"| {p['n']} | {ci(p, 'sqrt_kl')} | {ci(p, 'proxy')} | {ci(p, 'gold')} |" for p in report["points"]]
    sign = "−" if (f.get("beta") or 0) >= 0 else "+"
    fit = (f"gold − gold(1) ≈ d({f['alpha']:.3f} {sign} {abs(f['beta']):.3f} d); α's 95% interval "
           f"[{f['alpha_ci'][0]:.3f}, {f['alpha_ci'][1]:.3f}]; a peak in {100 * f['peak_share']:.0f}% of resampled pools"
           if f.get("alpha") is not None else "no fit")
    secs = report["seconds"]
    cost = "; ".join(f"{w} {s:.0f} s" for w, s in secs.items() if w != "all")
    lines += ["", f"Pool of {report['pool']} ({report['failed']} failed), seed {report['seed']}, {report['bootstrap']} "
              f"bootstrap resamples (95% intervals in brackets). Fit: {fit}. "
              + ("Notes: " + "; ".join(report["notes"]) + ". " if report["notes"] else "")
              + f"Cost on the 2-core CPU: {cost}; {secs['all']:.0f} s in all."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
