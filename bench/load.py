"""Simulated people using one `loomwork serve` at once: latency of what the page asks for, and errors.

    .venv/bin/python bench/load.py [--users 20] [--seconds 60] [--think 0.3] [--db sqlite|postgresql|both]

Each user works in one of four trees (five per tree) and repeats what a person at the page does: navigate (the
page's path, outline and children requests, plus its version poll) most of the time, and now and then expand with
the mock model (n=2 × 8 tokens, streamed), write a child, edit, tag, or undo their own last operation. Between
steps a user pauses for an exponentially distributed think time (mean --think s; 0 for a stress test). The
baseline, measured first in the same run, is one user alone with no think time. Prints p50/p95 per request kind
and the ratio of each p95 to the single user's; errors are any status other than 2xx, 404 and 409 (a node
another user deleted, an undo another got to first), and any failed expansion.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loomwork import ops  # noqa: E402
from loomwork.store import Store  # noqa: E402
from tests.servers import loomwork_server, postgres_server  # noqa: E402

READS = ("path", "outline", "children", "version")
WRITES = ("expand", "add", "edit", "tag", "undo")
WORDS = "the loom thread weave river light stone night door voice dream".split()


class User:
    def __init__(self, base: str, name: str, tree: str, root: str, seed: int, think: float, log):
        self.http = httpx.Client(base_url=base + "/api", headers={"X-Loomwork-User": name}, timeout=120)
        self.tree, self.rng, self.think, self.log = tree, random.Random(seed), think, log
        self.here, self.known = root, [root]

    def _timed(self, kind: str, method: str, path: str, body=None):
        started = time.perf_counter()
        try:
            r = self.http.request(method, path, json=body)
            ok = r.status_code < 300 or r.status_code in (404, 409)
            why = f"{r.status_code} {method} {path}: {r.text[:200]}"
        except httpx.HTTPError as exc:
            r, ok, why = None, False, f"{method} {path}: {exc!r}"
        self.log(kind, time.perf_counter() - started, ok, why)
        return r if r is not None and r.status_code < 300 else None

    def navigate(self) -> None:
        target = self.rng.choice(self.known[-50:])
        path = self._timed("path", "GET", f"/nodes/{target}/path")
        if path is None:
            return
        self.here = target
        self._timed("outline", "GET", f"/nodes/{target}/outline")
        kids = self._timed("children", "GET", f"/nodes/{target}/children")
        self._timed("version", "GET", f"/trees/{self.tree}/version")
        if kids is not None:
            self.known += [k["id"] for k in kids.json()[:3]]

    def expand(self) -> None:
        started, ok, why = time.perf_counter(), False, "expand: no answer"
        body = {"model": "mock:default", "params": {"n": 2, "max_tokens": 8}}
        try:
            with self.http.stream("POST", f"/nodes/{self.here}/expand", json=body) as r:
                event = None
                for line in r.iter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif event in ("done", "error") and line.startswith("data: "):
                        data = json.loads(line[6:])
                        ok = event == "done" or "while the model generated" in data.get("message", "")
                        why = f"expand {self.here}: {data.get('message')}"
                        if event == "done":
                            self.known += [c["id"] for c in data["children"]]
                        break
                ok = ok or r.status_code == 404
        except httpx.HTTPError as exc:
            why = f"expand {self.here}: {exc!r}"
        self.log("expand", time.perf_counter() - started, ok, why)

    def step(self) -> None:
        roll = self.rng.random()
        self.steps = getattr(self, "steps", 0) + 1  # in the text: an edit never repeats the node's text
        text = " " + " ".join(self.rng.choice(WORDS) for _ in range(3)) + f" {self.steps}"
        if roll < 0.6:
            self.navigate()
        elif roll < 0.7:
            self.expand()
        elif roll < 0.8:
            made = self._timed("add", "POST", f"/nodes/{self.here}/children", {"text": text})
            if made is not None:
                self.known.append(made.json()["id"])
        elif roll < 0.87:
            self._timed("edit", "POST", f"/nodes/{self.here}/edit", {"text": text})
        elif roll < 0.95:
            self._timed("tag", "POST", f"/nodes/{self.here}/tags", {"add": [self.rng.choice(["keep", "later"])]})
        else:
            self._timed("undo", "POST", f"/trees/{self.tree}/undo", {})

    def run(self, until: float) -> None:
        while time.perf_counter() < until:
            self.step()
            if self.think:
                time.sleep(self.rng.expovariate(1 / self.think))


def measure(base: str, roots: list[tuple[str, str]], users: int, seconds: float, think: float) -> dict:
    times: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    what: list[str] = []
    lock = threading.Lock()

    def log(kind: str, took: float, ok: bool, why: str) -> None:
        with lock:
            times[kind].append(took * 1000)
            errors[kind] += not ok
            if not ok:
                what.append(why)

    until = time.perf_counter() + seconds
    crowd = [User(base, f"user{i}", *roots[i % len(roots)], seed=i, think=think, log=log) for i in range(users)]
    threads = [threading.Thread(target=u.run, args=(until,)) for u in crowd]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"times": times, "errors": errors, "what": what}


def _p(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else (values[0] if values else float("nan"))


def run(db: str, label: str, users: int, seconds: float, think: float) -> None:
    store = Store.open(db)
    roots = []
    for t in range(4):
        tree, root = ops.new_tree(store, f"Tree {t}: the load begins")
        for w in WORDS[:5]:
            ops.add_child(store, root.id, " " + w)
        roots.append((tree.id, root.id))
    with loomwork_server(db) as base:
        alone = measure(base, roots[:1], 1, min(10.0, seconds / 3), 0.0)
        crowd = measure(base, roots, users, seconds, think)
    store.close()
    total = sum(len(v) for v in crowd["times"].values())
    errors = sum(crowd["errors"].values())
    print(f"\n{label}: {users} users for {seconds:.0f} s (think {think} s): {total:,} requests, {errors} errors")
    print(f"  {'request':<10}{'count':>7}{'p50 ms':>9}{'p95 ms':>9}{'alone p95':>11}{'ratio':>7}{'errors':>8}")
    for kind in READS + WRITES:
        got, solo = crowd["times"].get(kind, []), alone["times"].get(kind, [])
        if not got:
            continue
        ratio = _p(got, 95) / _p(solo, 95) if solo else float("nan")
        print(f"  {kind:<10}{len(got):>7}{_p(got, 50):>9.1f}{_p(got, 95):>9.1f}{_p(solo, 95):>11.1f}{ratio:>7.1f}"
              f"{crowd['errors'][kind]:>8}")
    reads = [t for k in READS for t in crowd["times"].get(k, [])]
    writes = [t for k in WRITES if k != "expand" for t in crowd["times"].get(k, [])]
    for why in crowd["what"][:5]:
        print(f"  error: {why}")
    print(f"  all reads p95 {_p(reads, 95):.1f} ms (goal < 50), writes p95 {_p(writes, 95):.1f} ms (goal < 150), "
          f"expand p95 {_p(crowd['times']['expand'], 95):.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--think", type=float, default=0.3, help="mean pause between a user's steps, in seconds")
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    args = ap.parse_args()
    with contextlib.ExitStack() as stack:
        if args.db in ("sqlite", "both"):
            path = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "load.sqlite"
            run(str(path), "SQLite", args.users, args.seconds, args.think)
        if args.db in ("postgresql", "both"):
            run(stack.enter_context(postgres_server())(), "PostgreSQL", args.users, args.seconds, args.think)


if __name__ == "__main__":
    main()
