"""Simulated people using one `loomwork serve` at once: latency of what the page asks for, and errors.

    .venv/bin/python bench/load.py [--users 20] [--seconds 60] [--think 0.3] [--db sqlite|postgresql|both]
                                   [--watchers 0,40]

The server has accounts (docs/teams.md): each user signs in with their own token and is an editor of every tree.
Each user works in one of four trees (five per tree) and repeats what a person at the page does: navigate (the
page's path, outline and children requests) most of the time, and now and then expand with the mock model (n=2 ×
8 tokens, streamed), write a child, edit, tag, or undo their own last operation. Between steps a user pauses for
an exponentially distributed think time (mean --think s; 0 for a stress test). Like the page, each user follows
its tree's live events (one stream each); --watchers adds that many more subscribers that only listen (spread
over the trees), one run per number. The event delay is from the change's record (written in its transaction)
to its arrival at a subscriber; every subscriber checks that its events come once each, in order, none missing.

The baseline, measured first in the same run, is one user alone with no think time. Prints p50/p95 per request
kind and the ratio of each p95 to the single user's; errors are any status other than 2xx, 404 and 409 (a node
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
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loomwork import accounts, ops  # noqa: E402
from loomwork.store import Store  # noqa: E402
from tests.servers import loomwork_server, postgres_server  # noqa: E402

READS = ("path", "outline", "children")
WRITES = ("expand", "add", "edit", "tag", "undo")
WORDS = "the loom thread weave river light stone night door voice dream".split()


class User:
    def __init__(self, base: str, token: str, tree: str, root: str, seed: int, think: float, log):
        self.http = httpx.Client(base_url=base + "/api", headers={"Authorization": f"Bearer {token}"}, timeout=120)
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


class Watcher:
    """A subscriber to a tree's events: the delay of each, and whether they came once each and in order."""

    def __init__(self, base: str, token: str, tree: str):
        self.http = httpx.Client(base_url=base + "/api", headers={"Authorization": f"Bearer {token}"},
                                 timeout=httpx.Timeout(10, read=None))
        self.tree, self.delays, self.broken, self.last = tree, [], 0, None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self._follow()
        except httpx.HTTPError:
            if not self.stop.is_set():
                self.broken += 1  # the stream broke while the run was on

    def _follow(self) -> None:
        now = self.http.get(f"/trees/{self.tree}/version").json()["version"]  # as a page: from the version it has
        with self.http.stream("GET", f"/trees/{self.tree}/events?after={now}") as r:
            event = None
            for line in r.iter_lines():
                if self.stop.is_set():
                    return
                if line.startswith("event: "):
                    event = line[7:]
                elif event == "change" and line.startswith("data: "):
                    e = json.loads(line[6:])
                    self.delays.append((time.time() - datetime.fromisoformat(e["at"]).timestamp()) * 1000)
                    if self.last is not None and e["seq"] != self.last + 1:
                        self.broken += 1  # a gap, a repeat or a step back
                    self.last = e["seq"]

    def close(self) -> None:
        self.stop.set()
        self.http.close()


def measure(base: str, roots: list[tuple[str, str]], tokens: list[str], users: int, seconds: float, think: float,
            watchers: int = 0, follow: bool = True) -> dict:
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

    listening = [Watcher(base, tokens[i % len(tokens)], roots[i % len(roots)][0])
                 for i in range((users if follow else 0) + watchers)]
    time.sleep(1.0)  # the streams are open before the first change
    until = time.perf_counter() + seconds
    crowd = [User(base, tokens[i], *roots[i % len(roots)], seed=i, think=think, log=log) for i in range(users)]
    threads = [threading.Thread(target=u.run, args=(until,)) for u in crowd]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(2.0)  # the last events arrive
    for w in listening:
        w.close()
    return {"times": times, "errors": errors, "what": what, "delays": [d for w in listening for d in w.delays],
            "broken": sum(w.broken for w in listening), "subscribers": len(listening)}


def _p(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else (values[0] if values else float("nan"))


def run(db: str, label: str, users: int, seconds: float, think: float, watchers: list[int],
        follow: bool = True, use_accounts: bool = True) -> None:
    store = Store.open(db)
    roots = []
    for t in range(4):
        tree, root = ops.new_tree(store, f"Tree {t}: the load begins")
        for w in WORDS[:5]:
            ops.add_child(store, root.id, " " + w)
        roots.append((tree.id, root.id))
    tokens = [accounts.add(store, f"user{i}") for i in range(users)]
    for i in range(users):
        for tree_id, _root in roots:
            accounts.grant(store, f"user{i}", tree_id, "editor")
    extra = ("--accounts", "--rate-limit", "100000") if use_accounts else ()
    with loomwork_server(db, extra=extra) as base:
        alone = measure(base, roots[:1], tokens, 1, min(10.0, seconds / 3), 0.0)
        for extra in watchers:
            report(label, users, seconds, think, alone, measure(base, roots, tokens, users, seconds, think, extra, follow))
    store.close()


def report(label: str, users: int, seconds: float, think: float, alone: dict, crowd: dict) -> None:
    total = sum(len(v) for v in crowd["times"].values())
    errors = sum(crowd["errors"].values())
    print(f"\n{label}: {users} users and {crowd['subscribers']} live subscribers for {seconds:.0f} s (think {think} s): "
          f"{total:,} requests, {errors} errors")
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
    delays = crowd["delays"]
    if not crowd["subscribers"]:
        return
    print(f"  live events: {len(delays):,} deliveries, delay p50 {_p(delays, 50):.0f} ms, p95 {_p(delays, 95):.0f} ms, "
          f"max {max(delays, default=float('nan')):.0f} ms (goal: p95 < 1000); out of order, repeated or missing: "
          f"{crowd['broken']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--think", type=float, default=0.3, help="mean pause between a user's steps, in seconds")
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--watchers", default="0,40", help="listening subscribers besides the users (one run each)")
    ap.add_argument("--no-follow", dest="follow", action="store_false", help="users do not follow their tree's events")
    ap.add_argument("--no-accounts", dest="accounts", action="store_false",
                    help="a server without accounts (the tokens are then ignored)")
    args = ap.parse_args()
    watchers = [int(w) for w in args.watchers.split(",")]
    with contextlib.ExitStack() as stack:
        if args.db in ("sqlite", "both"):
            path = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "load.sqlite"
            run(str(path), "SQLite", args.users, args.seconds, args.think, watchers, args.follow, args.accounts)
        if args.db in ("postgresql", "both"):
            run(stack.enter_context(postgres_server())(), "PostgreSQL", args.users, args.seconds, args.think, watchers,
                args.follow, args.accounts)


if __name__ == "__main__":
    main()
