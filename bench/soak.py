"""A seeded soak: thousands of operations of every kind from several clients at once, `loomwork check` and the
lost-write audit after every round. Prints one line per round; exits 1 on any failure, loss or violation.

    .venv/bin/python bench/soak.py [--ops 10000] [--round 1000] [--db sqlite|postgresql] [--seed 1]

Clients: three library threads, two HTTP clients of a `loomwork serve` over the same database, and the CLI.
The mix (tests/workload.py, SOAK_MIX) holds every kind of write: add, expand (mock model), edit, split, merge,
move, tag, archive, bookmark, branch, delete, import under a node, undo, redo, choose, rate, outcome label.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loomwork.store import Store  # noqa: E402
from tests.servers import postgres_server  # noqa: E402
from tests.workload import soak  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=10_000)
    ap.add_argument("--round", type=int, default=1_000)
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if args.db == "sqlite":
            db = str(Path(stack.enter_context(tempfile.TemporaryDirectory())) / "soak.sqlite")
        else:
            db = stack.enter_context(postgres_server())()
        store = stack.enter_context(Store.open(db))
        problems = soak(store, db, args.ops, args.round, args.seed)
    print(f"{args.ops} operations on {args.db} in {time.perf_counter() - started:.0f} s: "
          + ("no problems" if not problems else f"{len(problems)} problems"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
