"""How the web loom copes with a big tree: API latency and time-to-interactive in Chromium.

    .venv/bin/python bench/web_tree.py [--nodes 100000] [--requests 300]

Builds a random tree of --nodes nodes (and a 10-node baseline tree in the same database), serves it with
`loomwork serve`, then measures (1) p50/p95 latency of the path and children requests for random nodes and
(2) the time from opening a deep node's URL in headless Chromium until its path text and tree outline are on
screen. Each figure is printed for the big tree, the baseline tree, and their ratio. Goals: < 20 ms p95, < 1 s.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loomwork import ops  # noqa: E402
from loomwork.store import Store  # noqa: E402
from loomwork.tree import Node, new_id  # noqa: E402
from tests.servers import free_port  # noqa: E402

WORDS = "the loom thread weave pattern story river light stone night morning voice dream door".split()


def build(store: Store, count: int, rng: random.Random) -> list[str]:
    """A random tree: each node hangs under one of the 2,000 most recent nodes, so depth grows slowly."""
    tree, root = ops.new_tree(store, "A tree for benchmarking.")
    ids = [root.id]
    batch = []
    for _ in range(count - 1):
        parent = ids[max(0, len(ids) - 2000):][rng.randrange(min(len(ids), 2000))]
        node = Node(id=new_id(), tree_id=tree.id, parent_id=parent, origin="model",
                    text=" " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))))
        ids.append(node.id)
        batch.append(node)
    with store.tx() as tx:
        tx.insert_nodes(batch)
    return ids


def latency(client: httpx.Client, ids: list[str], n: int, rng: random.Random) -> dict[str, tuple[float, float]]:
    out = {}
    for kind in ("path", "children"):
        times = []
        for node_id in (rng.choice(ids) for _ in range(n)):
            t = time.perf_counter()
            client.get(f"/api/nodes/{node_id}/{kind}").raise_for_status()
            times.append((time.perf_counter() - t) * 1000)
        q = statistics.quantiles(times, n=20)
        out[kind] = (statistics.median(times), q[18])
    return out


def interactive_s(browser, base: str, node_id: str) -> float:
    page = browser.new_page()
    t = time.perf_counter()
    page.goto(f"{base}/#node={node_id}")
    page.locator("#read .seg.current").wait_for()
    page.locator("#outline .row.current").wait_for()
    elapsed = time.perf_counter() - t
    page.close()
    return elapsed


def deepest(store: Store, ids: list[str], rng: random.Random) -> tuple[str, int]:
    best = max((len(store.path(i)), i) for i in rng.sample(ids, min(200, len(ids))))
    return best[1], best[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=300)
    args = ap.parse_args()
    rng = random.Random(0)
    tmp = tempfile.mkdtemp()
    db = os.path.join(tmp, "bench.sqlite")
    store = Store.open(db)
    t = time.perf_counter()
    big = build(store, args.nodes, rng)
    print(f"built {args.nodes} nodes in {time.perf_counter() - t:.1f} s")
    small = build(store, 10, rng)
    deep_big, depth_big = deepest(store, big, rng)
    deep_small, depth_small = deepest(store, small, rng)
    store.close()

    port = free_port()
    env = {**os.environ, "LOOMWORK_DB": db, "LOOMWORK_MODEL": "mock:default"}
    proc = subprocess.Popen([sys.executable, "-m", "loomwork.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        client = httpx.Client(base_url=base)
        for _ in range(100):
            try:
                client.get("/api/trees").raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        lat_big = latency(client, big, args.requests, rng)
        lat_small = latency(client, small, args.requests, rng)
        print("API latency, ms (big tree / 10-node tree / ratio):")
        for kind in ("path", "children"):
            (b50, b95), (s50, s95) = lat_big[kind], lat_small[kind]
            print(f"  {kind:<9} p50 {b50:6.2f} / {s50:6.2f} / {b50 / s50:4.2f}   p95 {b95:6.2f} / {s95:6.2f} / {b95 / s95:4.2f}")
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                         args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            interactive_s(browser, base, deep_small)  # warm-up
            ti_big = min(interactive_s(browser, base, deep_big) for _ in range(3))
            ti_small = min(interactive_s(browser, base, deep_small) for _ in range(3))
            browser.close()
        print(f"time until interactive at a deep node: {ti_big:.3f} s (depth {depth_big}) / "
              f"{ti_small:.3f} s (depth {depth_small}) / ratio {ti_big / ti_small:.2f}")
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
