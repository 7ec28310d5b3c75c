"""Import and export of a big pyloom file, against plain json.load/json.dump of the same file in the same run.

    .venv/bin/python bench/formats.py [--nodes 100000]

Writes a random pyloom tree of --nodes nodes (nested JSON, like pyloom's own files), then times
`import_file` (parse, validate, one transaction into SQLite) and `export` (read, rebuild, serialise) and
reports their peak Python memory (tracemalloc, in a second pass). The baseline is json.load / json.dump of the
same file: the ratio says how much loomwork adds on top of merely reading and writing the JSON. Goal: < 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from loomwork.formats import io  # noqa: E402
from loomwork.store import Store  # noqa: E402

WORDS = "the loom thread weave pattern story river light stone night morning voice dream door".split()


def make_file(path: Path, count: int, rng: random.Random) -> None:
    nodes = [{"id": "root", "text": "A tree for benchmarking.", "children": [], "meta": {"source": "prompt"},
              "tags": []}]
    for i in range(1, count):
        parent = nodes[max(0, i - 2000) + rng.randrange(min(i, 2000))]
        node = {"id": f"n{i}", "parent_id": parent["id"], "children": [], "tags": ["bookmark"] if i % 97 == 0 else [],
                "text": " " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))),
                "meta": {"source": rng.choice(["AI", "AI", "AI", "prompt", "mixed"]),
                         "creation_timestamp": "2021-09-16-21.55.18"}}
        parent["children"].append(node)
        nodes.append(node)
    path.write_text(io.dumps({"root": nodes[0], "chapters": {}}))


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def peak_mb(fn) -> float:
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=100_000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    src = tmp / "big.json"
    make_file(src, args.nodes, random.Random(0))
    size = src.stat().st_size / 2**20
    store = Store.open(str(tmp / "bench.sqlite"))

    def load():
        with io._deep():
            return json.loads(src.read_text())

    data, t_load = timed(load)
    _, t_dump = timed(lambda: io.dumps(data))
    report, t_import = timed(lambda: io.import_file(store, src))
    tree_id = report.trees[0]
    text, t_export = timed(lambda: io.export(store, tree_id, "pyloom"))
    assert report.nodes == args.nodes and len(text) > 0
    m_import = peak_mb(lambda: io.import_file(store, src))
    m_export = peak_mb(lambda: io.export(store, tree_id, "pyloom"))
    m_load = peak_mb(load)
    print(f"pyloom file: {args.nodes:,} nodes, {size:.1f} MiB")
    print(f"  import  {t_import:6.2f} s  (json.load {t_load:5.2f} s, ratio {t_import / t_load:5.1f})  "
          f"peak {m_import:6.0f} MiB (json.load {m_load:.0f} MiB)")
    print(f"  export  {t_export:6.2f} s  (json.dump {t_dump:5.2f} s, ratio {t_export / t_dump:5.1f})  peak {m_export:6.0f} MiB")
    os.remove(src)


if __name__ == "__main__":
    main()
