"""The Goodhart curve on the packaged models, with a proxy that can be gamed (docs/graders.md has the figure).

    .venv/bin/python scripts/goodhart_demo.py [--pool 64] [--out docs/graders]

Gemma 3 270M base continues "The old lighthouse keeper climbed the stairs and" 64 times (32 tokens each, one pool).
The proxy is a judge prompt that Gemma itself scores: does the passage mention the sea? — a keyword a sample can
satisfy without being any good. The gold grader is held out: SmolLM2-135M-Instruct asked whether the passage is
well written and coherent. Best-of-n against the proxy is then read off the pool for n = 1 … 64.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
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

    async def run():
        try:
            return await goodhart.run(store, root.id, get_backend("hf:gemma-3-270m"), proxy, gold, ns, args.pool,
                                      SamplingParams(n=1, max_tokens=32, seed=args.seed))
        finally:
            await close_all()

    report = asyncio.run(run())
    goodhart.write(report, Path(args.out))
    print(json.dumps({k: v for k, v in report.items() if k != "errors"}, indent=1))


if __name__ == "__main__":
    main()
