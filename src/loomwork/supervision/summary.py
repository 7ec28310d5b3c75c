"""Per-queue, per-question summaries of the current ratings, with and without critiques shown."""

from __future__ import annotations

from ..store import Store
from ..store import supervision as sql
from .agreement import summarize
from .queues import get_queue
from .ratings import current


def queue_summary(store: Store, queue_ref: str) -> dict:
    queue = get_queue(store, queue_ref)
    with store.read() as tx:
        latest = current(sql.ratings_for(tx, queue_id=queue["id"]))
    questions = []
    for q in queue["questions"]:
        rows = [r for (_n, _r, question), r in latest.items() if question == q]
        labels = {(r["node_id"], r["rater"]): r["label"] for r in rows}
        entry = {"question": q, **summarize(labels),
                 "flagged": sum(1 for r in rows if r["flagged"])}
        if queue["critiques"] != "off":
            entry["with_critique"] = summarize({(r["node_id"], r["rater"]): r["label"] for r in rows if r["critique_id"]})
            entry["without_critique"] = summarize({(r["node_id"], r["rater"]): r["label"]
                                                   for r in rows if not r["critique_id"]})
        questions.append(entry)
    return {"queue": {"id": queue["id"], "name": queue["name"], "critiques": queue["critiques"]},
            "questions": questions}
