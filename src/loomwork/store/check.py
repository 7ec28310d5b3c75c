"""``loomwork check``: every invariant of a loomwork database, verified from its raw rows (docs/concurrency.md).

It reads in one read transaction and changes nothing, so it can run beside a live server. Each problem names the
row it is about. The invariants:

- schema: the database is at the schema version this loomwork writes (SQLite: integrity and foreign-key checks);
- trees: each tree's root exists, belongs to it and has no parent; no tree has another parentless node;
- nodes: each node's tree exists; its parent exists and is in the same tree; following parents reaches the root
  (no cycles, nothing hanging below a cycle); its origin is known; its token records tile its text exactly;
- tags are 1 to 200 characters without control characters;
- records about nodes (generations, choices, ratings, outcomes, critiques, scores) point at nodes that exist or
  that the tree's operation log can bring back (a deleted subtree is undoable, and its ratings must survive);
  ratings point at live queues and critiques; queues at live trees; a choice's pick is among its candidates
  (which are the record of what was shown then, and may since have gone);
- the operation log replays: from the current rows, every undone entry can be redone in order and then every
  entry undone, newest first, each finding the rows exactly as it left them.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import func, select

from ..tree import ORIGINS
from ..validate import BIDI, MAX_TAG
from . import journal, search
from .migrations import MIGRATIONS
from .access import ROLES
from .schema import (accounts, choices, critiques, events, generations, grader_scores, node_tags, nodes, oplog,
                     outcomes, queue_roles, queues, ratings, scores, tree_roles, trees)
from .store import Store

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _number_or_none(x) -> bool:
    return x is None or (isinstance(x, (int, float)) and not isinstance(x, bool))


@dataclass(frozen=True)
class Problem:
    kind: str
    id: str
    message: str

    def to_json(self) -> dict:
        return {"kind": self.kind, "id": self.id, "message": self.message}


@dataclass
class CheckReport:
    problems: list[Problem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, ident, message: str) -> None:
        self.problems.append(Problem(kind, str(ident), message))

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        return {"ok": self.ok, "counts": self.counts, "problems": [p.to_json() for p in self.problems]}


def check(store: Store) -> CheckReport:
    report = CheckReport()
    version = store.version()
    if version != len(MIGRATIONS):
        report.add("schema", version, f"schema version {version}, but this loomwork checks version {len(MIGRATIONS)}"
                   + (" (any other loomwork command migrates it)" if version < len(MIGRATIONS) else ""))
        return report
    with store.read() as tx:
        conn = tx.conn
        if store.sqlite:
            for (line,) in conn.exec_driver_sql("PRAGMA integrity_check"):
                if line != "ok":
                    report.add("sqlite", "integrity", line)
            for table, rowid, parent, _fk in conn.exec_driver_sql("PRAGMA foreign_key_check"):
                report.add("foreign-key", f"{table}:{rowid}", f"a row of {table} points at a missing row of {parent}")
            for message in search.check(conn):
                report.add("search-index", "nodes_search", message)
        tree_rows = {r.id: r for r in conn.execute(select(trees.c.id, trees.c.root_id))}
        node_rows = {r.id: r for r in conn.execute(select(nodes.c.id, nodes.c.tree_id, nodes.c.parent_id,
                                                         nodes.c.origin))}
        logs = defaultdict(list)
        for e in conn.execute(select(oplog).order_by(oplog.c.seq)):
            logs[e.tree_id].append(e)
        recoverable = {i for entries in logs.values() for e in entries for i in (*e.before, *e.after)}
        report.counts = {"trees": len(tree_rows), "nodes": len(node_rows),
                         "log_entries": sum(len(v) for v in logs.values())}
        _trees_and_nodes(report, tree_rows, node_rows)
        _tokens(report, conn)
        _tags(report, conn)
        _records(report, conn, tree_rows, set(node_rows) | recoverable)
        for tree_id, entries in logs.items():
            if tree_id not in tree_rows:
                report.add("oplog", entries[0].seq, f"log entries of tree {tree_id}, which does not exist")
            else:
                _replay(report, conn, tree_id, entries)
    return report


def _trees_and_nodes(report: CheckReport, tree_rows: dict, node_rows: dict) -> None:
    for t in tree_rows.values():
        root = node_rows.get(t.root_id)
        if root is None:
            report.add("tree", t.id, f"its root {t.root_id} does not exist")
        elif root.tree_id != t.id or root.parent_id is not None:
            report.add("tree", t.id, f"its root {t.root_id} is not a parentless node of the tree")
    for n in node_rows.values():
        if n.tree_id not in tree_rows:
            report.add("orphan", n.id, f"its tree {n.tree_id} does not exist")
        if n.origin not in ORIGINS:
            report.add("origin", n.id, f"unknown origin {n.origin!r}")
        if n.parent_id is None:
            if n.tree_id in tree_rows and tree_rows[n.tree_id].root_id != n.id:
                report.add("extra-root", n.id, f"a second parentless node in tree {n.tree_id}")
            continue
        parent = node_rows.get(n.parent_id)
        if parent is None:
            report.add("orphan", n.id, f"its parent {n.parent_id} does not exist")
        elif parent.tree_id != n.tree_id:
            report.add("cross-tree", n.id, f"its parent {n.parent_id} is in tree {parent.tree_id}, not {n.tree_id}")
    _cycles(report, node_rows)


def _cycles(report: CheckReport, node_rows: dict) -> None:
    """Nodes whose parent links never reach a parentless node: on a cycle, or hanging below one."""
    reaches: dict[str, bool] = {}
    for start in node_rows:
        trail, on_trail, cur = [], set(), start
        while cur is not None and cur not in reaches and cur in node_rows and cur not in on_trail:
            trail.append(cur)
            on_trail.add(cur)
            cur = node_rows[cur].parent_id
        if cur is None or cur not in node_rows:
            result = True  # reached a root (or a missing parent, reported as an orphan)
        elif cur in reaches:
            result = reaches[cur]
        else:  # cur is on the trail: a cycle
            ring = trail[trail.index(cur):]
            report.add("cycle", cur, "parent links form a cycle: " + " -> ".join(ring + [cur]))
            for i in ring:
                reaches[i] = False
            result = False
        for i in trail:
            if i not in reaches:
                reaches[i] = result
                if not result:
                    report.add("detached", i, "it hangs below a cycle of parent links, not below its tree's root")


def _tokens(report: CheckReport, conn) -> None:
    q = select(nodes.c.id, nodes.c.text, nodes.c.tokens)
    for r in conn.execution_options(yield_per=2000).execute(q):
        if "\x00" in r.text or _SURROGATE.search(r.text):
            report.add("text", r.id, "its text holds NUL or a lone surrogate")
        toks = r.tokens or []
        if not all(isinstance(t, dict) and isinstance(t.get("text"), str) for t in toks):
            report.add("tokens", r.id, "a token record without text")
        elif toks and "".join(t["text"] for t in toks) != r.text:
            report.add("tokens", r.id, "its token records do not join to its text")
        elif not all(_number_or_none(t.get("logprob")) and all(
                isinstance(p, list) and len(p) == 2 and _number_or_none(p[1]) and p[1] is not None
                for p in t.get("top") or []) for t in toks):
            report.add("tokens", r.id, "a token record whose logprob or alternatives are not numbers")


def _tags(report: CheckReport, conn) -> None:
    for node_id, tag in conn.execute(select(node_tags.c.node_id, node_tags.c.tag)):
        if not tag or len(tag) > MAX_TAG or tag != tag.strip() or _CONTROL.search(tag) or BIDI.search(tag):
            report.add("tag", node_id, f"invalid tag {tag[:50]!r}")


def _records(report: CheckReport, conn, tree_rows: dict, known: set[str]) -> None:
    def need(kind: str, ident, node_id: str, what: str) -> None:
        if node_id not in known:
            report.add(kind, ident, f"its {what} {node_id} does not exist (and no undo can bring it back)")

    for g in conn.execute(select(generations.c.id, generations.c.node_id)):
        need("generation", g.id, g.node_id, "expanded node")
    for c in conn.execute(select(choices)):
        need("choice", c.id, c.chosen_id, "chosen node")
        need("choice", c.id, c.parent_id, "parent")
        # the candidates are a record of what was shown when the choice was made (curation.py): a candidate that
        # is gone for good since (undone, and its actor's redo branch ended by a new operation) is history, not harm
        if c.chosen_id not in (c.candidates or []):
            report.add("choice", c.id, "the chosen node is not among its candidates")
    queue_ids = set()
    for q in conn.execute(select(queues.c.id, queues.c.filter)):
        queue_ids.add(q.id)
        if (q.filter or {}).get("tree") not in tree_rows:
            report.add("queue", q.id, f"its tree {(q.filter or {}).get('tree')} does not exist")
    critique_ids = set()
    for c in conn.execute(select(critiques.c.id, critiques.c.node_id)):
        critique_ids.add(c.id)
        need("critique", c.id, c.node_id, "node")
    for r in conn.execute(select(ratings.c.id, ratings.c.node_id, ratings.c.queue_id, ratings.c.critique_id)):
        need("rating", r.id, r.node_id, "node")
        if r.queue_id is not None and r.queue_id not in queue_ids:
            report.add("rating", r.id, f"its queue {r.queue_id} does not exist")
        if r.critique_id is not None and r.critique_id not in critique_ids:
            report.add("rating", r.id, f"its critique {r.critique_id} does not exist")
    for o in conn.execute(select(outcomes.c.id, outcomes.c.node_id)):
        need("outcome", o.id, o.node_id, "node")
    for s in conn.execute(select(scores.c.node_id, scores.c.model)):
        need("score", f"{s.node_id}:{s.model}", s.node_id, "node")
    for g in conn.execute(select(grader_scores.c.node_id, grader_scores.c.grader_id)):
        need("grader score", f"{g.node_id}:{g.grader_id}", g.node_id, "node")
    _teams(report, conn, tree_rows, queue_ids)


def _teams(report: CheckReport, conn, tree_rows: dict, queue_ids: set) -> None:
    """Roles name trees, queues and accounts that exist; each tree's events are numbered 1 to its version."""
    names = set(conn.execute(select(accounts.c.name)).scalars())
    for r in conn.execute(select(tree_roles)):
        if r.role not in ROLES:
            report.add("role", f"{r.tree_id}:{r.account}", f"unknown role {r.role!r}")
        if r.account != "*" and r.account not in names:
            report.add("role", f"{r.tree_id}:{r.account}", f"a role for {r.account}, who has no account")
    for r in conn.execute(select(queue_roles)):
        if r.queue_id not in queue_ids:
            report.add("role", f"{r.queue_id}:{r.account}", f"a role on queue {r.queue_id}, which does not exist")
    numbered = conn.execute(select(events.c.tree_id, func.count(), func.max(events.c.seq)).group_by(events.c.tree_id))
    versions = dict(conn.execute(select(trees.c.id, trees.c.version)).all())
    for tree_id, count, top in numbered:
        if tree_id not in tree_rows:
            report.add("event", tree_id, f"events of tree {tree_id}, which does not exist")
        elif top > versions[tree_id] or count != top - _first(conn, tree_id) + 1:
            report.add("event", tree_id, f"its events are not numbered without gaps up to its version {versions[tree_id]}")


def _first(conn, tree_id: str) -> int:
    return conn.execute(select(func.min(events.c.seq)).where(events.c.tree_id == tree_id)).scalar_one()


def _replay(report: CheckReport, conn, tree_id: str, entries: list) -> None:
    """Two simulations on in-memory copies of the rows. (1) Undo every active entry, newest first: each must find
    its rows exactly as it left them. (2) Redo every undone entry, oldest first: each must find its rows as they
    were before it, unless another entry explains the difference (an active one after it, or an undone one before
    it, touched the same rows: since redo branches are per person, someone else's later work can supersede an
    undone entry, and then redoing it is refused as a conflict, which is no corruption)."""
    ids = {i for e in entries for i in (*e.before, *e.after)}
    current = journal.snapshot(conn, ids)
    state = dict(current)
    for e in reversed([e for e in entries if not e.undone]):
        if not journal.same({i: state.get(i) for i in e.after}, e.after):
            _mismatch(report, tree_id, e, e.after, state, "undone")
            return
        state.update(e.before)
    state = dict(current)
    for e in (e for e in entries if e.undone):
        if journal.same({i: state.get(i) for i in e.before}, e.before):
            state.update(e.after)
            continue
        rows = set(e.before)
        if not any(rows & set(o.before) for o in entries
                   if o is not e and ((not o.undone and o.seq > e.seq) or (o.undone and o.seq < e.seq))):
            _mismatch(report, tree_id, e, e.before, state, "redone")
            return


def _mismatch(report: CheckReport, tree_id: str, e, expect: dict, state: dict, verb: str) -> None:
    changed = next(i for i, row in expect.items() if not journal.same({i: state.get(i)}, {i: row}))
    report.add("oplog", e.seq, f"entry #{e.seq} ({e.label}) of tree {tree_id} cannot be {verb}: node {changed} is "
               "not as the log says")
