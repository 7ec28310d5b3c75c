"""Training-ready exports of curated and rated trees (docs/supervision.md has one table per format).

- sft: {"prompt", "completion"} for chosen paths: bookmarked nodes, and leaves whose every step rates +1.
- preference: {"prompt", "chosen", "rejected"} from curation: among siblings, the one chosen (a recorded choice),
  rated higher, or continued (it has children, or a bookmark) against one passed over or rated lower.
- stepwise: {"prompt", "completions", "labels"} for rated paths (TRL's stepwise-supervision format).
- prm800k: OpenAI's PRM800K schema, one line per (path, labeler).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timezone
from statistics import mean

from ..curation import latest_choices
from ..errors import InvalidInput
from ..store import Store
from ..store import supervision as sql
from ..tree import Node, path_text
from .adjudication import latest, pseudonym
from .ratings import DEFAULT_QUESTIONS, current, current_for_tree

STEP_QUESTION = DEFAULT_QUESTIONS[0]


class _Tree:
    def __init__(self, store: Store, tree_id: str, question: str = STEP_QUESTION):
        self.question = question
        with store.read() as tx:
            self.tree = tx.tree(tree_id)
            self.nodes = [n for n in tx.tree_nodes(tree_id)]
        self.by_id = {n.id: n for n in self.nodes}
        self.kids: dict[str, list[Node]] = defaultdict(list)
        for n in self.nodes:
            if n.parent_id and not n.archived:
                self.kids[n.parent_id].append(n)
        self.ratings = current_for_tree(store, tree_id)
        self.step_labels: dict[str, dict[str, int]] = defaultdict(dict)  # node -> rater -> label
        for (node, rater, question), r in self.ratings.items():
            if question == self.question:
                self.step_labels[node][rater] = r["label"]
        with store.read() as tx:  # a reviewer's final label, where the raters disagreed and one was given
            ruled = latest(sql.adjudications_for(tx, tree_id=tree_id))
        self.ruled = {n: r["label"] for (n, q), r in ruled.items() if q == self.question}
        for node in self.ruled:
            self.step_labels.setdefault(node, {})

    def path(self, node_id: str) -> list[Node]:
        out = [self.by_id[node_id]]
        while out[-1].parent_id:
            out.append(self.by_id[out[-1].parent_id])
        return out[::-1]

    def visible(self, n: Node) -> bool:
        return all(not p.archived for p in self.path(n.id))

    def leaves(self) -> list[Node]:
        return [n for n in self.nodes if not self.kids.get(n.id) and self.visible(n)]

    def mean_label(self, node_id: str) -> float | None:
        """The step's label: the reviewer's adjudication if there is one, else the mean of its raters' labels."""
        if node_id in self.ruled:
            return float(self.ruled[node_id])
        labels = self.step_labels.get(node_id)
        return mean(labels.values()) if labels else None

    def worst_label(self, node_id: str) -> int | None:
        """The adjudication if there is one, else the lowest of the raters' labels."""
        if node_id in self.ruled:
            return self.ruled[node_id]
        labels = self.step_labels.get(node_id)
        return min(labels.values()) if labels else None


def _nonempty(rows: list[dict], fmt: str, why: str) -> list[dict]:
    if not rows:
        raise InvalidInput(f"nothing to export as {fmt}: {why}")
    return rows


def sft(store: Store, tree_id: str, question: str = STEP_QUESTION) -> list[dict]:
    t = _Tree(store, tree_id, question)
    ends = {n.id for n in t.nodes if n.bookmarked and n.parent_id and t.visible(n)}
    for leaf in t.leaves():
        steps = t.path(leaf.id)[1:]
        if steps and all(t.worst_label(s.id) == 1 for s in steps):
            ends.add(leaf.id)
    rows = []
    for end in sorted(ends, key=lambda i: [n.created_at for n in t.path(i)]):
        path = t.path(end)
        rows.append({"prompt": path[0].text, "completion": path_text(path[1:])})
    return _nonempty(rows, "sft", "no bookmarked node and no leaf whose every step is rated +1")


def preference(store: Store, tree_id: str, question: str = STEP_QUESTION) -> list[dict]:
    t = _Tree(store, tree_id, question)
    choices = latest_choices(store, tree_id)
    rows = []
    for parent_id, kids in t.kids.items():
        if len(kids) < 2 or not t.visible(t.by_id[parent_id]):
            continue
        prompt = path_text(t.path(parent_id))
        pairs: list[tuple[Node, Node]] = []
        # people's choices only: a grader's (best-of-n, autoloom) is not what a person prototyped
        chosen = [choices[k.id] for k in kids if k.id in choices and choices[k.id].grader is None]
        if chosen:
            c = chosen[-1]
            pairs = [(t.by_id[c.chosen_id], t.by_id[o]) for o in c.candidates
                     if o != c.chosen_id and o in t.by_id and not t.by_id[o].archived]
        elif any(t.mean_label(k.id) is not None for k in kids):
            rated = [k for k in kids if t.mean_label(k.id) is not None]
            pairs = [(a, b) for a in rated for b in rated if t.mean_label(a.id) > t.mean_label(b.id)]
        else:
            kept = [k for k in kids if t.kids.get(k.id) or k.bookmarked]
            passed = [k for k in kids if k not in kept]
            pairs = [(a, b) for a in kept for b in passed]
        rows += [{"prompt": prompt, "chosen": a.text, "rejected": b.text} for a, b in pairs]
    return _nonempty(rows, "preference", "no siblings were chosen, rated apart, or continued over others")


def stepwise(store: Store, tree_id: str, neutral_is_good: bool = False, question: str = STEP_QUESTION) -> list[dict]:
    """One example per leaf (or deepest rated node) whose path has every step rated; a step's label is its
    ratings' mean sign, with 0 (neutral) mapped as ``neutral_is_good`` says (TRL's converter maps it to false)."""
    t = _Tree(store, tree_id, question)
    rows = []
    rated_ends = [n for n in t.nodes if n.id in t.step_labels and t.visible(n)
                  and not any(k.id in t.step_labels for k in t.kids.get(n.id, []))]
    for end in rated_ends:
        steps = t.path(end.id)[1:]
        if not all(s.id in t.step_labels for s in steps):
            continue
        labels = []
        for s in steps:
            m = t.mean_label(s.id)
            labels.append(m > 0 or (m == 0 and neutral_is_good))
        rows.append({"prompt": t.path(end.id)[0].text, "completions": [s.text for s in steps], "labels": labels})
    return _nonempty(rows, "stepwise", f"no path has every step rated on {question!r}")


def rater_ids(store: Store, names: bool = False):
    """How exports name raters: a pseudonym stable within this database (the default), or the names."""
    if names:
        return lambda rater: rater
    with store.tx() as tx:
        secret = sql.salt(tx)
    return lambda rater: pseudonym(secret, rater)


def ratings_rows(store: Store, tree_id: str, names: bool = False) -> list[dict]:
    """Every current rating of a tree's steps, one row each, with the rater as a pseudonym (or named), and each
    reviewer's adjudication as a row of its own (``adjudication: true``): what agreement studies need."""
    who = rater_ids(store, names)
    with store.read() as tx:
        tx.tree(tree_id)
        records = sql.ratings_for(tx, tree_id=tree_id)
        ruled = sql.adjudications_for(tx, tree_id=tree_id)
    rows = [{"node_id": r["node_id"], "question": r["question"], "rater": who(r["rater"]), "label": r["label"],
             "flagged": r["flagged"], "note": r["note"], "queue_id": r["queue_id"], "critique_shown": bool(r["critique_id"]),
             "adjudication": False, "created_at": _utc(r["created_at"])}
            for r in current(records).values()]
    rows += [{"node_id": a["node_id"], "question": a["question"], "rater": who(a["reviewer"]), "label": a["label"],
              "flagged": False, "note": a["note"], "queue_id": a["queue_id"], "critique_shown": False,
              "adjudication": True, "created_at": _utc(a["created_at"])} for a in latest(ruled).values()]
    return _nonempty(rows, "ratings", "no step of this tree is rated")



def _utc(ts) -> str:
    """ISO 8601 in UTC (SQLite hands back naive timestamps, which are UTC)."""
    return (ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)).isoformat()
