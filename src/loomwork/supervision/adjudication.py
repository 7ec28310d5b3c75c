"""Shared audits, the reviewer's part (docs/teams.md, docs/supervision.md): the steps a queue's raters disagree
on, with every rater's label, and the reviewer's final label for each (an adjudication). Exports use an
adjudicated label over the raters' own; agreement statistics keep the raters' labels as they were."""

from __future__ import annotations

import hashlib
import hmac

from ..errors import Forbidden, InvalidInput
from ..store import Store, access, journal, retrying
from ..store import supervision as sql
from ..tree import new_id
from .membership import get_queue, is_item
from .ratings import LABELS, current


def require_reviewer(store: Store, queue: dict) -> None:
    """A queue's reviewers and its tree's owners adjudicate; so does anyone without accounts."""
    p = access.current()
    if p is None or p.admin:
        return
    with store.read() as tx:
        if access.queue_role(tx.conn, queue["id"], p.name) == "reviewer":
            return
        if access.allowed(tx.conn, queue["filter"]["tree"], "owner"):
            return
    raise Forbidden(f"{p.name} does not review queue {queue['name']!r}: adjudicating is its reviewers' work")


def can_review(store: Store, queue: dict) -> bool:
    try:
        require_reviewer(store, queue)
        return True
    except Forbidden:
        return False


def latest(rows: list[dict]) -> dict[tuple[str, str], dict]:
    """The adjudication in force per (node, question): the latest."""
    return {(r["node_id"], r["question"]): r for r in rows}


def disagreements(store: Store, queue_ref: str) -> list[dict]:
    """Every (step, question) of a queue whose raters' current labels differ, with each rater's label, note and
    flag, the step and its context, and the adjudication in force (if any); in tree order."""
    queue = get_queue(store, queue_ref)
    require_reviewer(store, queue)
    with store.read() as tx:
        labels = current(sql.ratings_for(tx, queue_id=queue["id"]))
        ruled = latest(sql.adjudications_for(tx, queue_id=queue["id"]))
    by_step: dict[tuple[str, str], list[dict]] = {}
    for (node, _rater, question), r in labels.items():
        by_step.setdefault((node, question), []).append(r)
    split = [(k, rs) for k, rs in by_step.items() if len({r["label"] for r in rs}) > 1]
    out = []
    for (node_id, question), rs in split:
        path = store.path(node_id)
        ruling = ruled.get((node_id, question))
        out.append({"node_id": node_id, "question": question, "step": path[-1].text,
                    "context": "".join(n.text for n in path[:-1]),
                    "labels": [{"rater": r["rater"], "label": r["label"], "note": r["note"], "flagged": r["flagged"]}
                               for r in sorted(rs, key=lambda r: r["rater"])],
                    "adjudication": None if ruling is None else {"label": ruling["label"], "reviewer": ruling["reviewer"],
                                                                  "note": ruling["note"]}})
    order = {n: i for i, n in enumerate(_tree_order(store, queue))}
    return sorted(out, key=lambda d: (order.get(d["node_id"], 0), queue["questions"].index(d["question"])
                                      if d["question"] in queue["questions"] else 0))


def _tree_order(store: Store, queue: dict) -> list[str]:
    with store.read() as tx:
        return [n.id for n in tx.tree_nodes(queue["filter"]["tree"])]


@retrying
def adjudicate(store: Store, queue_ref: str, node_id: str, question: str, label: int,
               note: str | None = None) -> dict:
    """Record the reviewer's final label for a step of the queue (a later one replaces it)."""
    if label not in LABELS or isinstance(label, bool):
        raise InvalidInput(f"a label is -1 (bad), 0 (neutral) or +1 (good), not {label!r}")
    queue = get_queue(store, queue_ref)
    require_reviewer(store, queue)
    if not is_item(store, queue, node_id):
        raise InvalidInput(f"node {node_id} is not an item of queue {queue['name']!r}")
    if question not in queue["questions"]:
        raise InvalidInput(f"queue {queue['name']!r} does not ask {question!r}")
    row = dict(id=new_id(), queue_id=queue["id"], tree_id=queue["filter"]["tree"], node_id=node_id,
               question=question, label=label, reviewer=journal.current_actor(), note=note or None)
    with store.tx() as tx:
        tx.lock(node_id, need=None)  # the reviewer's right was checked above, on the queue
        sql.add_adjudication(tx, **row)
        journal.bump(tx.conn, row["tree_id"], "adjudication", {"nodes": [node_id], "queue": queue["id"]})
    return row


def pseudonym(secret: str, rater: str) -> str:
    """A rater's stable id in exports: the same within a database, unlinkable to the name without its secret
    (names are easy to guess, so a plain hash would give them away)."""
    return "rater-" + hmac.new(secret.encode(), rater.encode("utf-8"), hashlib.sha256).hexdigest()[:10]
