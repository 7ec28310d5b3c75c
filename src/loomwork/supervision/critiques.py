"""Model-written critiques of a step, stored with the prompt template that produced them."""

from __future__ import annotations

import asyncio

from ..backends.base import Backend, SamplingParams
from .. import validate
from ..errors import InvalidInput
from ..store import Store, retrying
from ..store import access, journal
from ..store import supervision as sql
from ..tree import new_id, path_text

DEFAULT_TEMPLATE = (
    "Below is some work, done step by step, followed by one of its steps.\n\n"
    "Work so far:\n{context}\n\nStep to check:\n{step}\n\n"
    "A careful reviewer lists every problem with this step (or writes 'No problems.'):\n-"
)


def render(template: str, context: str, step: str) -> str:
    validate.text(template, "the critique template")
    if "{step}" not in template:
        raise InvalidInput("a critique template must contain {step} (and may contain {context})")
    try:
        return template.format(context=context, step=step)
    except (KeyError, IndexError, ValueError) as exc:
        raise InvalidInput(f"the critique template is malformed ({exc}); use {{context}} and {{step}}, "
                           "and double any other braces") from None


async def critique(store: Store, node_id: str, backend: Backend, template: str = DEFAULT_TEMPLATE,
                   max_tokens: int = 96, seed: int | None = None, queue_id: str | None = None) -> dict:
    """Ask a critic model for the problems of one step (it sees the step's context, never what follows)."""
    path = store.path(node_id)
    prompt = render(template, path_text(path[:-1]), path[-1].text)
    done = await backend.complete(prompt, SamplingParams(n=1, max_tokens=max_tokens, temperature=0.7, seed=seed))
    text = done.completions[0].text.strip() or "(the critic wrote nothing)"
    row = dict(id=new_id(), node_id=node_id, model=backend.ref, template=template, text=text)
    await asyncio.to_thread(store_critique, store, row, queue_id)  # a write may wait: not on the event loop
    return row


@retrying
def store_critique(store: Store, row: dict, queue_id: str | None = None) -> None:
    with store.tx() as tx:
        node = tx.lock(row["node_id"], need=None)
        access.require_rating(tx.conn, node.tree_id, queue_id)  # a critique is shown to raters
        sql.add_critique(tx, **row, actor=journal.current_actor())
