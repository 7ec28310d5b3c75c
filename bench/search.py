"""Search by text on a real loom: the indexed search (store/search.py) against the scan it replaced, measured in
the same run, through the web API in process (no network), one user.

    .venv/bin/python bench/search.py [--copies 10] [--repeat 30]

Set-up: janus's 764-node demo loom (shared/fixtures/pyloom/loom_demo.json), then the same loom imported --copies
times into one database (the per-query work should follow the hits, not the database's size). For each query —
a common word, a rare word, a phrase, two letters, nothing that matches — the median time of GET /api/search
(50 hits at most, each with its trail), against the scan: lower(text) LIKE over every node, and one path read per
hit (the code before the index), and against a path read of a depth-21 node (GET /api/nodes/ID/path).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from loomwork.formats import io  # noqa: E402
from loomwork.store import Store  # noqa: E402
from loomwork.store.schema import nodes  # noqa: E402
from loomwork.web.app import create_app  # noqa: E402

DEMO = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "pyloom" / "loom_demo.json"
QUERIES = {"common word": "the", "rare word": "clockwork", "phrase": "of the", "two letters": "ze",
           "no match": "zqxj"}
BASE = "http://127.0.0.1:8765"


def scan(store: Store, q: str, limit: int = 50) -> list[dict]:
    """The search as it was before the index: a scan, then each hit's path read on its own."""
    like = "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    with store.read() as tx:
        hits = tx._nodes(tx.conn.execute(select(nodes).where(func.lower(nodes.c.text).like(like, escape="\\"))
                                         .order_by(nodes.c.seq).limit(limit)))
        return [{"id": h.id, "trail": [p.text[:40] for p in tx.path(h.id)]} for h in hits]


async def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


async def run(copies: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as work:
        store = Store.open(str(Path(work) / "bench.sqlite"))
        for _ in range(copies):
            io.import_file(store, DEMO)
        with store.read() as tx:
            total = tx.conn.execute(select(func.count()).select_from(nodes)).scalar_one()
            deep = max(tx.conn.execute(select(nodes.c.id)).scalars(), key=lambda i: len(tx.path_ids(i)))
            depth = len(tx.path_ids(deep))
        print(f"{copies} copies of the demo loom: {total:,} nodes; path read of a depth-{depth} node as the unit")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(store)), base_url=BASE) as client:
            path_ms = await timed(lambda: client.get(f"/api/nodes/{deep}/path"), repeat)
            print(f"{'query':<12} {'hits':>5} {'indexed ms':>11} {'scan ms':>8} {'scan/indexed':>13} {'indexed/path':>13}")
            for name, q in QUERIES.items():
                hits = len((await client.get("/api/search", params={"q": q})).json())
                indexed = await timed(lambda: client.get("/api/search", params={"q": q}), repeat)
                old = await timed(lambda: asyncio.to_thread(scan, store, q), repeat)
                print(f"{name:<12} {hits:>5} {indexed:>11.1f} {old:>8.1f} {old / indexed:>13.1f} "
                      f"{indexed / path_ms:>13.1f}")
            print(f"path read: {path_ms:.1f} ms")
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    for copies in sorted({1, args.copies}):
        asyncio.run(run(copies, args.repeat))


if __name__ == "__main__":
    main()
