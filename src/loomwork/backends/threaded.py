"""Streaming from a model that computes in a worker thread (hf, llama): the one bridge to asyncio."""

from __future__ import annotations

import asyncio
import threading
from typing import AsyncIterator, Callable

from .base import Done, TokenEvent


async def stream_from_thread(work: Callable[[Callable, threading.Event], Done], name: str,
                             start: Callable[[Callable[[], None]], object] | None = None) -> AsyncIterator[TokenEvent | Done]:
    """Run ``work(emit, stop_flag)`` in a thread of its own (or hand it to ``start``, e.g. the model thread's
    ``submit``) and yield what it emits, then its ``Done``. When the consumer goes away (a cancelled request),
    ``stop_flag`` is set: the work stops at its next step."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    stop_flag = threading.Event()

    def emit(event) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, event)
        except RuntimeError:  # the consumer's event loop is gone; nobody is listening any more
            stop_flag.set()

    def run() -> None:
        if stop_flag.is_set():  # the consumer left while this waited for the model thread
            return
        try:
            emit(work(emit, stop_flag))
        except BaseException as exc:  # surfaced in the consumer below
            emit(exc)

    if start is None:
        threading.Thread(target=run, name=name, daemon=True).start()
    else:
        start(run)
    try:
        while True:
            event = await queue.get()
            if isinstance(event, BaseException):
                raise event
            yield event
            if isinstance(event, Done):
                return
    finally:
        stop_flag.set()
