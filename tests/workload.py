"""A seeded workload of mixed tree operations from several concurrent clients, and the audit of what it left.

Three kinds of client work on one tree in one database at once: the library (threads of this process), the HTTP
API of a running ``loomwork serve``, and the ``loomwork`` command line (a process per command). Each operation
ends in one of three ways: done (acknowledged), refused (a clear 4xx-style answer: with others changing the tree
at the same moment, a merge target may have gained a child or a move may now make a cycle), or failed (anything
else: a lock timeout, a 5xx, a traceback). ``audit`` then checks that no acknowledged write was lost and that
``loomwork check`` finds nothing. Used by tests/test_concurrency.py, bench/soak.py and bench/load.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from loomwork import curation, ops
from loomwork.backends import SamplingParams, get_backend
from loomwork.errors import Busy, Conflict, InvalidInput, NotFound, StoreError
from loomwork.store import Store
from loomwork.store.check import check
from loomwork.store.journal import acting_as
from loomwork.formats import io
from loomwork.supervision import queues, ratings
from tests.servers import loomwork_server

WORDS = "the loom thread weave river light stone night door voice dream".split()
# the operations of the mix, with how often each is drawn
MIX = {"add": 20, "expand": 10, "edit": 8, "split": 8, "merge": 6, "move": 8, "tag": 10, "archive": 6,
       "bookmark": 4, "undo": 6, "redo": 3, "choose": 4, "rate": 5, "branch": 2}
# the soak adds the rest: hard deletes, imports under a node, outcome labels
SOAK_MIX = {**MIX, "delete": 2, "import": 1, "outcome": 2}
PYLOOM = json.dumps({"root": {"id": "r", "text": " imported", "children": [
    {"id": "a", "text": " one", "meta": {"source": "AI"}}, {"id": "b", "text": " two", "children": [{"text": " three"}]}]}})
QUESTION = "Is this step correct?"


class Refused(Exception):
    """A clear refusal (400/404/409 or the library's InvalidInput, NotFound, Conflict)."""


class Failure(Exception):
    """Anything else: what a concurrent workload must never see."""


@dataclass
class Tally:
    done: Counter = field(default_factory=Counter)
    refused: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    created: set[str] = field(default_factory=set)  # acknowledged new node ids
    ratings: set[str] = field(default_factory=set)
    outcomes: set[str] = field(default_factory=set)
    choices: set[str] = field(default_factory=set)
    undone: set[str] = field(default_factory=set)  # nodes an acknowledged undo or redo said it changed
    by_client: Counter = field(default_factory=Counter)  # operations each client finished (done or refused)
    latency: dict[str, list[float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, seconds: float) -> None:
        with self.lock:
            self.latency.setdefault(kind, []).append(seconds)


class Pool:
    """Node ids the clients know of (shared, so each one also works on the others' nodes)."""

    def __init__(self, ids: list[str]):
        self.ids, self.lock = list(ids), threading.Lock()

    def add(self, *ids: str) -> None:
        with self.lock:
            self.ids.extend(ids)

    def forget(self, message: str) -> None:
        """Drop an id that a refusal said no longer exists (deleted, merged or undone by another client)."""
        if "no node with id '" in message:
            gone = message.split("no node with id '")[1].split("'")[0]
            with self.lock:
                self.ids = [i for i in self.ids if i != gone]

    def pick(self, rng: random.Random) -> str:
        with self.lock:
            return rng.choice(self.ids[-400:]) if rng.random() < 0.8 else rng.choice(self.ids)


def _classify(message: str) -> Exception:
    contention = any(w in message.lower() for w in ("locked", "busy", "database error", "traceback", "deadlock"))
    return Failure(message) if contention else Refused(message)


class LibraryClient:
    kinds = set(SOAK_MIX)

    def __init__(self, store: Store, name: str):
        self.store, self.name, self.mock = store, name, get_backend("mock")

    def call(self, op: str, *args):
        try:
            with acting_as(self.name):
                return getattr(self, "_" + op)(*args)
        except (InvalidInput, NotFound, Conflict) as exc:
            raise Refused(str(exc)) from None
        except (Busy, StoreError) as exc:
            raise Failure(f"{type(exc).__name__}: {exc}") from None

    def _get(self, node):
        return self.store.node(node).to_json()

    def _add(self, node, text):
        return ops.add_child(self.store, node, text).to_json()

    def _expand(self, node, seed):
        kids = asyncio.run(ops.expand(self.store, node, self.mock, SamplingParams(n=2, max_tokens=4, seed=seed)))
        return [k.to_json() for k in kids]

    def _edit(self, node, text):
        return ops.edit(self.store, node, text).to_json()

    def _split(self, node, offset):
        return [n.to_json() for n in ops.split(self.store, node, offset)]

    def _merge(self, node):
        return ops.merge(self.store, node).to_json()

    def _move(self, node, parent):
        return ops.move(self.store, node, parent).to_json()

    def _tag(self, node, tag, remove):
        return ops.tag(self.store, node, tag, remove=remove).to_json()

    def _archive(self, node, on):
        return ops.set_archived(self.store, node, on).to_json()

    def _bookmark(self, node, on):
        return ops.set_bookmark(self.store, node, on).to_json()

    def _branch(self, node, index, alt):
        return ops.branch(self.store, node, index, alt).to_json()

    def _undo(self, tree, force):
        return ops.undo(self.store, tree, force=force)

    def _redo(self, tree, force):
        return ops.redo(self.store, tree, force=force)

    def _choose(self, node):
        return {"id": curation.record_choice(self.store, node).id}

    def _rate(self, node, queue, label):
        return ratings.rate(self.store, node, self.name, label, QUESTION, queue=queue)

    def _delete(self, node):
        return {"deleted": ops.delete_subtree(self.store, node)}

    def _import(self, node):
        return {"roots": io.write(self.store, io.parse_text(PYLOOM), under=node).roots}

    def _outcome(self, node, label):
        return ratings.label_outcome(self.store, node, self.name, label)


class HttpClient:
    kinds = set(SOAK_MIX) - {"import", "outcome"}  # the API has no import or outcome route

    def __init__(self, base: str, name: str):
        self.http = httpx.Client(base_url=base + "/api", headers={"X-Loomwork-User": name}, timeout=120)
        self.name = name

    def call(self, op: str, *args):
        return getattr(self, "_" + op)(*args)

    def _send(self, method: str, path: str, body=None):
        try:
            r = self.http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise Failure(f"{method} {path}: {exc!r}") from None
        if r.status_code < 300:
            return r.json()
        message = f"{r.status_code} {method} {path}: {r.text[:300]}"
        raise Refused(message) if r.status_code in (400, 404, 409) else Failure(message)

    def _get(self, node):
        return self._send("GET", f"/nodes/{node}")

    def _add(self, node, text):
        return self._send("POST", f"/nodes/{node}/children", {"text": text})

    def _expand(self, node, seed):
        body = {"model": "mock:default", "params": {"n": 2, "max_tokens": 4, "seed": seed}}
        try:
            with self.http.stream("POST", f"/nodes/{node}/expand", json=body) as r:
                if r.status_code != 200:
                    r.read()
                    raise _classify(f"{r.status_code}: {r.text[:300]}") if r.status_code < 500 else Failure(r.text)
                last = None
                for line in r.iter_lines():
                    if line.startswith("event: "):
                        last = line[7:]
                    elif line.startswith("data: ") and last in ("done", "error"):
                        data = json.loads(line[6:])
                        if last == "error":
                            raise _classify(data["message"])
                        return data["children"]
        except httpx.HTTPError as exc:
            raise Failure(f"expand {node}: {exc!r}") from None
        raise Failure(f"expand {node}: the stream ended without done or error")

    def _edit(self, node, text):
        return self._send("POST", f"/nodes/{node}/edit", {"text": text})

    def _split(self, node, offset):
        r = self._send("POST", f"/nodes/{node}/split", {"offset": offset})
        return [r["head"], r["tail"]]

    def _merge(self, node):
        return self._send("POST", f"/nodes/{node}/merge")

    def _move(self, node, parent):
        return self._send("POST", f"/nodes/{node}/move", {"parent_id": parent})

    def _tag(self, node, tag, remove):
        return self._send("POST", f"/nodes/{node}/tags", {"remove" if remove else "add": [tag]})

    def _archive(self, node, on):
        return self._send("POST", f"/nodes/{node}/archive", {"on": on})

    def _bookmark(self, node, on):
        return self._send("POST", f"/nodes/{node}/bookmark", {"on": on})

    def _branch(self, node, index, alt):
        return self._send("POST", f"/nodes/{node}/branch", {"token_index": index, "alternative": alt})

    def _undo(self, tree, force):
        return self._send("POST", f"/trees/{tree}/undo", {"force": force})

    def _redo(self, tree, force):
        return self._send("POST", f"/trees/{tree}/redo", {"force": force})

    def _choose(self, node):
        return self._send("POST", f"/nodes/{node}/choose", {})

    def _rate(self, node, queue, label):
        return self._send("POST", f"/queues/{queue}/ratings",
                          {"node_id": node, "rater": self.name, "question": QUESTION, "label": label})

    def _delete(self, node):
        return self._send("DELETE", f"/nodes/{node}")


class CliClient:
    """The ``loomwork`` command, one process per operation, as a person at a terminal beside the server."""

    kinds = set(SOAK_MIX) - {"branch", "import", "outcome"}

    def __init__(self, db: str, name: str):
        self.db, self.name = db, name
        self.env = {**os.environ, "LOOMWORK_USER": name, "LOOMWORK_DB": db}

    def call(self, op: str, *args):
        return getattr(self, "_" + op)(*args)

    def _run(self, *argv, parse: bool = True):
        p = subprocess.run([sys.executable, "-m", "loomwork.cli", *map(str, argv)], env=self.env,
                           capture_output=True, text=True, timeout=300)
        if p.returncode == 0:
            return json.loads(p.stdout) if parse else {}
        err = p.stderr.strip()
        if p.returncode == 1 and err.startswith("error: ") and "\n" not in err:
            raise _classify(err)
        raise Failure(f"loomwork {' '.join(map(str, argv))} exited {p.returncode}: {err[-500:]}")

    def _get(self, node):
        return self._run("show", node, "--json")["node"]

    def _add(self, node, text):
        return self._run("add", node, text, "--json")

    def _expand(self, node, seed):
        return self._run("expand", node, "-m", "mock", "-n", 2, "--max-tokens", 4, "--seed", seed, "--json")["children"]

    def _edit(self, node, text):
        return self._run("edit", node, text, "--json")

    def _split(self, node, offset):
        r = self._run("split", node, offset, "--json")
        return [r["head"], r["tail"]]

    def _merge(self, node):
        return self._run("merge", node, "--json")

    def _move(self, node, parent):
        return self._run("move", node, parent, "--json")

    def _tag(self, node, tag, remove):
        return self._run("tag", node, tag, *(["--remove"] if remove else []), "--json")

    def _archive(self, node, on):
        return self._run("archive", node, *([] if on else ["--restore"]), "--json")

    def _bookmark(self, node, on):
        return self._run("bookmark", node, *([] if on else ["--off"]), "--json")

    def _branch(self, node, index, alt):
        raise Refused("the CLI has no branch command")

    def _undo(self, tree, force):
        return self._run("undo", tree, *(["--force"] if force else []), "--json")

    def _redo(self, tree, force):
        return self._run("redo", tree, *(["--force"] if force else []), "--json")

    def _choose(self, node):
        return self._run("choose", node, "--json")

    def _rate(self, node, queue, label):
        return self._run("rate", node, label, "--rater", self.name, "-q", QUESTION, "--queue", queue, "--json")

    def _delete(self, node):
        return self._run("delete", node, "--yes", parse=False)


@dataclass
class World:
    """What every client of one run shares."""

    tree_id: str
    root_id: str
    queue: str
    pool: Pool
    tally: Tally


def setup(store: Store, seed: int = 0) -> World:
    tree, root = ops.new_tree(store, "The workload begins:")
    first = [ops.add_child(store, root.id, f" {w}").id for w in WORDS[:4]]
    queue = queues.create_queue(store, f"workload-{tree.id}", tree=tree.id, questions=[QUESTION], seed=seed)
    return World(tree.id, root.id, queue["name"], Pool([root.id, *first]), Tally())


def one_operation(client, world: World, rng: random.Random, kind: str | None = None, mix: dict = MIX) -> None:
    if kind is None:
        kinds = [k for k in mix if k in client.kinds]
        kind = rng.choices(kinds, weights=[mix[k] for k in kinds])[0]
    tally, node = world.tally, world.pool.pick(rng)
    started = time.perf_counter()
    try:
        made = _operate(client, world, rng, kind, node)
    except Refused as exc:
        world.pool.forget(str(exc))
        with tally.lock:
            tally.refused[kind] += 1
        return
    except Failure as exc:
        with tally.lock:
            tally.failures.append(f"{kind} by {getattr(client, 'name', '?')}: {exc}")
        return
    finally:
        tally.record(kind, time.perf_counter() - started)
        with tally.lock:
            tally.by_client[getattr(client, "name", "?")] += 1
    with tally.lock:
        tally.done[kind] += 1
        tally.created.update(made)
    world.pool.add(*made)


def _operate(client, world: World, rng: random.Random, kind: str, node: str) -> list[str]:
    """Run one operation; returns the ids of the nodes it acknowledged creating."""
    text = " " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))
    if kind == "add":
        return [client.call("add", node, text)["id"]]
    if kind == "expand":
        return [c["id"] for c in client.call("expand", node, rng.randrange(10**6))]
    if kind == "edit":
        return [client.call("edit", node, text)["id"]]
    if kind == "split":
        length = len(client.call("get", node)["text"])
        if length < 2:
            raise Refused("too short to split")
        return [client.call("split", node, rng.randint(1, length - 1))[1]["id"]]
    if kind == "merge":
        client.call("merge", node)
        return []
    if kind == "move":
        client.call("move", node, world.pool.pick(rng))
        return []
    if kind == "tag":
        client.call("tag", node, rng.choice(["keep", "maybe", "later"]), rng.random() < 0.3)
        return []
    if kind in ("archive", "bookmark"):
        client.call(kind, node, rng.random() < 0.7)
        return []
    if kind in ("undo", "redo"):
        entry = client.call(kind, world.tree_id, rng.random() < 0.5)
        with world.tally.lock:
            world.tally.undone.update(entry["nodes"])
        return []
    if kind == "choose":
        world.tally.choices.add(client.call("choose", node)["id"])
        return []
    if kind == "rate":
        world.tally.ratings.add(client.call("rate", node, world.queue, rng.choice([-1, 0, 1]))["id"])
        return []
    if kind == "delete":
        if node == world.root_id:
            raise Refused("the workload keeps its tree")
        client.call("delete", node)
        return []
    if kind == "import":
        return client.call("import", node)["roots"]
    if kind == "outcome":
        world.tally.outcomes.add(client.call("outcome", node, rng.choice(["correct", "incorrect"]))["id"])
        return []
    if kind == "branch":
        got = client.call("get", node)
        options = [(i, a) for i, t in enumerate(got.get("tokens") or []) for a, _lp in t["top"]
                   if a and a != t["text"]]
        if not options:
            raise Refused("no alternative to branch with")
        return [client.call("branch", node, *rng.choice(options))["id"]]
    raise ValueError(kind)


def run_clients(clients: list, world: World, total: int, seed: int, mix: dict = MIX) -> float:
    """Run ``total`` operations shared among ``clients`` (one thread each); returns the seconds taken."""
    counter = iter(range(total))
    lock = threading.Lock()

    def work(i: int, client) -> None:
        rng = random.Random(seed * 1000 + i)
        while True:
            with lock:
                if next(counter, None) is None:
                    return
            one_operation(client, world, rng, mix=mix)

    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(i, c)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def audit(store: Store, world: World) -> list[str]:
    """What went wrong: acknowledged writes that are gone without the log accounting for them, acknowledged
    ratings or choices that are gone, and every problem `loomwork check` finds."""
    out = [f"check: {p.kind} {p.id}: {p.message}" for p in check(store).problems]
    with store.read() as tx:  # the whole database: editing a root starts a new tree
        existing = {r[0] for r in tx.conn.exec_driver_sql("SELECT id FROM nodes")}
        logged = {i for e in tx.conn.exec_driver_sql("SELECT before, after FROM oplog")
                  for snap in e for i in (json.loads(snap) if isinstance(snap, str) else snap)}
        rating_ids = {r[0] for r in tx.conn.exec_driver_sql("SELECT id FROM ratings")}
        outcome_ids = {r[0] for r in tx.conn.exec_driver_sql("SELECT id FROM outcomes")}
        choice_ids = {r[0] for r in tx.conn.exec_driver_sql("SELECT id FROM choices")}
    # A node made by an acknowledged operation is in the tree, or in a log entry (a merge or delete took it away,
    # undoably), or an acknowledged undo took its creation back (and a later operation ended that redo branch).
    # Anything else was acknowledged and then lost.
    out += [f"lost node {i}" for i in sorted(world.tally.created - existing - logged - world.tally.undone)]
    out += [f"lost rating {i}" for i in sorted(world.tally.ratings - rating_ids)]
    out += [f"lost outcome {i}" for i in sorted(world.tally.outcomes - outcome_ids)]
    out += [f"lost choice {i}" for i in sorted(world.tally.choices - choice_ids)]
    return out


def soak(store: Store, db: str, ops: int, per_round: int, seed: int, cli: bool = True, out=print) -> list[str]:
    """Run the soak on an open store; returns every problem found (empty when all is well)."""
    world = setup(store, seed=seed)
    problems: list[str] = []
    with loomwork_server(db) as base:
        clients = [LibraryClient(store, f"lib{i}") for i in range(3)] + \
                  [HttpClient(base, f"http{i}") for i in range(2)] + ([CliClient(db, "cli")] if cli else [])
        done = 0
        while done < ops:
            n = min(per_round, ops - done)
            seconds = run_clients(clients, world, total=n, seed=seed * 7919 + done, mix=SOAK_MIX)
            done += n
            found = audit(store, world) + world.tally.failures
            world.tally.failures.clear()
            problems += found
            t = world.tally
            out(f"{done:>6} ops  {n / seconds:6.0f} ops/s  done {sum(t.done.values()):>6}  refused "
                f"{sum(t.refused.values()):>5}  problems {len(found)}" + (f"  first: {found[0]}" if found else ""))
    return problems
