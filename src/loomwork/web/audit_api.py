"""The audit API under /api/queues: blinded step views, ratings, critiques and summaries (supervision/)."""

from __future__ import annotations


from fastapi import APIRouter, Request

from ..supervision import adjudication, critiques, queues, ratings, summary
from .common import Body, allowed_model, load_backend, store_of

router = APIRouter(prefix="/api/queues")


def _store(request: Request):
    return request.app.state.store


class NewQueue(Body):
    name: str
    tree: str | None = None
    subtree: str | None = None
    tag: str | None = None
    origin: str | None = None
    min_depth: int | None = None
    max_depth: int | None = None
    questions: list[str] | None = None
    blinded: bool = True
    critiques: str = "off"
    critic: str | None = None
    seed: int | None = None
    overlap: int | None = None


class Rating(Body):
    node_id: str
    rater: str
    question: str
    label: int
    note: str | None = None
    flagged: bool = False
    critique_id: str | None = None


def _public(q: dict, store) -> dict:
    return {"id": q["id"], "name": q["name"], "questions": q["questions"], "blinded": q["blinded"],
            "critiques": q["critiques"], "items": len(queues.items(store, q)), "overlap": q.get("overlap"),
            "raters": queues.raters(store, q), "reviewer": adjudication.can_review(store, q)}


@router.get("")
def list_queues(request: Request) -> list[dict]:
    store = store_of(request)
    return [_public(q, store) for q in queues.list_queues(store)]


@router.post("")
def create(body: NewQueue, request: Request) -> dict:
    store = store_of(request)
    if body.critic is not None:
        allowed_model(request, body.critic)
    return _public(queues.create_queue(store, **body.model_dump()), store)


@router.get("/{queue}/next")
def next_item(queue: str, rater: str, request: Request) -> dict:
    """The blinded view of the rater's next step, or ``{"done": true}`` with the progress."""
    store = store_of(request)
    q = queues.get_queue(store, queue)
    item = queues.next_item(store, q, ratings.check_rater(rater))
    if item is None:
        prog = queues.progress(store, q, rater)
        return {"done": True, "progress": {"total": prog["total"], "done": prog["done"]}}
    return queues.audit_view(store, q, item, rater)


@router.get("/{queue}/items/{node_id}")
def item(queue: str, node_id: str, rater: str, request: Request) -> dict:
    store = store_of(request)
    return queues.audit_view(store, queues.get_queue(store, queue), node_id, ratings.check_rater(rater))


@router.post("/{queue}/items/{node_id}/critique")
async def make_critique(queue: str, node_id: str, request: Request) -> dict:
    """Write the critique a queue shows beside this step (with the queue's critic model), once."""
    store = store_of(request)
    q = queues.get_queue(store, queue)
    view = queues.audit_view(store, q, node_id, "critic")
    if view["critique"] is None or "id" in view["critique"]:
        return {"critique": view["critique"]}
    backend = await load_backend(request, q["critic"])
    row = await critiques.critique(store, node_id, backend, queue_id=q["id"])
    return {"critique": {"id": row["id"], "text": row["text"], "model": row["model"]}}


@router.post("/{queue}/ratings")
def rate(queue: str, body: Rating, request: Request) -> dict:
    store = store_of(request)
    row = ratings.rate(store, body.node_id, body.rater, body.label, body.question, note=body.note,
                       flagged=body.flagged, queue=queue, critique_id=body.critique_id)
    return {"id": row["id"], "label": row["label"]}


@router.get("/{queue}/summary")
def queue_summary(queue: str, request: Request) -> dict:
    return summary.queue_summary(store_of(request), queue)


class Adjudication(Body):
    node_id: str
    question: str
    label: int
    note: str | None = None


@router.get("/{queue}/disagreements")
def queue_disagreements(queue: str, request: Request) -> list[dict]:
    """The steps the queue's raters disagree on, each rater's label, and the reviewer's ruling so far."""
    return adjudication.disagreements(store_of(request), queue)


@router.post("/{queue}/adjudications")
def adjudicate(queue: str, body: Adjudication, request: Request) -> dict:
    """The reviewer's final label for a step (exports use it over the raters' labels)."""
    row = adjudication.adjudicate(store_of(request), queue, body.node_id, body.question, body.label, body.note)
    return {"id": row["id"], "label": row["label"], "reviewer": row["reviewer"]}
