"""Server-sent events, in one place: an event's bytes, the response that carries a stream of them, an error event
for a failure nobody foresaw, work with a model (``model_stream``) and work that reports as it goes
(``alongside``). A stream always ends with ``done`` or ``error``; a page that goes away closes the stream's
generator, which stops what it was doing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any, AsyncIterator, Awaitable, Callable

from fastapi.responses import StreamingResponse

from ..errors import LoomworkError

log = logging.getLogger("loomwork.web")


def event(name: str, data: Any, event_id: str | int | None = None) -> bytes:
    # backslashreplace: a lone surrogate echoed in a message becomes its JSON escape, not a failed stream
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode("utf-8", "backslashreplace")


def failure(exc: Exception) -> bytes:
    """An error event for a failure nobody foresaw, so that a stream never just stops (and a log line)."""
    if isinstance(exc, LoomworkError):
        return event("error", {"message": str(exc)})
    log.exception("a streamed request failed")
    return event("error", {"message": f"internal error ({type(exc).__name__}): {exc}"})


def respond(events: AsyncIterator[tuple[str, Any]] | AsyncIterator[tuple[str, Any, Any]]) -> StreamingResponse:
    """The response for ``events``: ``(name, data)`` or ``(name, data, id)`` tuples; an exception becomes the
    stream's last event, ``error``."""

    async def body():
        try:
            async with contextlib.aclosing(events) as steps:
                async for item in steps:
                    yield event(*item)
        except Exception as exc:  # noqa: BLE001 (reported in the stream)
            yield failure(exc)

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def model_stream(load: Callable[[], Awaitable[Any]], model: str,
                 work: Callable[[Any], AsyncIterator[tuple[str, Any]]]) -> StreamingResponse:
    """Work with a model: ``status`` while ``load()`` loads it, then each ``(event, data)`` that ``work(backend)``
    yields."""

    async def events():
        yield "status", {"message": f"loading {model}…"}
        backend = await load()
        async with contextlib.aclosing(work(backend)) as steps:
            async for item in steps:
                yield item

    return respond(events())


async def alongside(run: Callable[[Callable[[Any], None]], Awaitable[Any]], name: str
                    ) -> AsyncIterator[tuple[str, Any]]:
    """Run ``run(emit)``; yield ``(name, item)`` for each item it emits while it runs, then ``("done", its
    result)``. Closing this generator (the page left) cancels the work."""
    queue: asyncio.Queue = asyncio.Queue()
    task = asyncio.ensure_future(run(queue.put_nowait))
    try:
        while True:
            getter = asyncio.ensure_future(queue.get())
            await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield name, getter.result()
                continue
            getter.cancel()
            while not queue.empty():  # what it emitted as it finished
                yield name, queue.get_nowait()
            break
        yield "done", task.result()
    finally:
        task.cancel()
