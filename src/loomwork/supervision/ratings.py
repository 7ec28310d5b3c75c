"""Ratings (process labels, append-only) and outcome labels. The latest rating per (node, rater, question) is
the current one; earlier ones stay as history."""

from __future__ import annotations

from .. import validate
from ..errors import InvalidInput
from ..store import Store, retrying
from ..store import access, journal
from ..store import supervision as sql
from ..tree import new_id
from .membership import assigned, get_queue, is_item, raters

LABELS = (-1, 0, 1)
DEFAULT_QUESTIONS = (
    "Is this step correct, assuming the previous steps are?",
    "Does it follow the instructions?",
    "Does it make progress?",
)


def check_rater(rater: str) -> str:
    """The rater a rating or view is for: with accounts always the account itself, whatever name is given."""
    return validate.name(access.rater_name(rater) or "", "a rater name")


@retrying
def rate(store: Store, node_id: str, rater: str, label: int, question: str = DEFAULT_QUESTIONS[0], *,
         note: str | None = None, flagged: bool = False, queue: str | None = None,
         critique_id: str | None = None) -> dict:
    """Record one rating. With a queue, the node must be one of its items and the question one of its questions."""
    if label not in LABELS or isinstance(label, bool):
        raise InvalidInput(f"a rating is -1 (bad), 0 (neutral) or +1 (good), not {label!r}")
    rater = check_rater(rater)
    question = validate.name(question, "the question", 1000)
    if note is not None:
        validate.text(note, "the note", empty_ok=True)
    node = store.node(node_id)
    queue_id = None
    if queue is not None:
        q = get_queue(store, queue)
        if not is_item(store, q, node_id):
            raise InvalidInput(f"node {node_id} is not an item of queue {q['name']!r}")
        if question not in q["questions"]:
            raise InvalidInput(f"queue {q['name']!r} does not ask {question!r}")
        crew = raters(store, q) if q.get("overlap") else []
        if crew and rater not in crew:  # the overlap is exact only if nobody else adds labels
            raise InvalidInput(f"queue {q['name']!r} gives each step to {q['overlap']} of its raters "
                               f"({', '.join(crew)}), and {rater} is not one of them: its reviewer can place you")
        if crew and rater not in assigned(q, node_id, crew):
            raise InvalidInput(f"in queue {q['name']!r} step {node_id} goes to {', '.join(assigned(q, node_id, crew))}, "
                               f"not {rater} (each step to {q['overlap']} of its raters)")
        queue_id = q["id"]
    row = dict(id=new_id(), tree_id=node.tree_id, node_id=node_id, rater=rater, question=question, label=label,
               note=note or None, flagged=bool(flagged), critique_id=critique_id, queue_id=queue_id)
    with store.tx() as tx:
        tx.lock(node_id, need=None)  # the node still exists when the rating commits (a delete waits, or went first)
        access.require_rating(tx.conn, node.tree_id, queue_id)
        if critique_id is not None:
            shown = sql.critique_of(tx, critique_id) if isinstance(critique_id, str) else None
            if shown is None or shown["node_id"] != node_id:
                raise InvalidInput(f"no critique {str(critique_id)[:50]!r} of node {node_id} was shown")
        sql.add_rating(tx, **row)
        journal.bump(tx.conn, node.tree_id, "rating", {"nodes": [node_id], "queue": queue_id})
    return row


def current(records: list[dict]) -> dict[tuple[str, str, str], dict]:
    """The latest rating per (node, rater, question) among ``records`` (which come oldest first)."""
    out = {}
    for r in records:
        out[(r["node_id"], r["rater"], r["question"])] = r
    return out


def current_for_tree(store: Store, tree_id: str) -> dict[tuple[str, str, str], dict]:
    with store.read() as tx:
        return current(sql.ratings_for(tx, tree_id=tree_id))


@retrying
def label_outcome(store: Store, node_id: str, rater: str, label: str, note: str | None = None) -> dict:
    """An outcome label (e.g. a final answer marked correct), kept apart from the step ratings."""
    label = validate.name(label or "", "an outcome label (e.g. correct, incorrect)", 64)
    if note is not None:
        validate.text(note, "the note", empty_ok=True)
    node = store.node(node_id)
    row = dict(id=new_id(), tree_id=node.tree_id, node_id=node_id, rater=check_rater(rater),
               label=label, note=note)
    with store.tx() as tx:
        tx.lock(node_id, need="rater")
        sql.add_outcome(tx, **row)
        journal.bump(tx.conn, node.tree_id, "outcome", {"nodes": [node_id]})
    return row
