"""All tensor work of the local torch models on one long-lived thread, urgent work first.

Why one thread: torch's CPU kernels run on OpenMP (libgomp), and every thread that runs a parallel region keeps a
team of worker threads of its own. As soon as the teams hold more threads than there are CPUs (a second thread
that ever ran a kernel is enough on 2 cores), libgomp cuts its workers' busy-wait from ~300,000 spins to 100, and
each of the ~400 kernels of a decoding step then waits for a futex wake-up. Measured on this project's 2-core
machine: a batch-8 Gemma step 61 ms on the main thread, 75 ms on a worker thread; n=8 x 64 tokens from a
1,000-token path 5.9 s vs 7.5 s. Loading, forward passes, sampling and scoring of every torch model therefore run
on this one thread (created on first use, shared by all models of the process: the CPU has no room for two
forward passes anyway), and other threads only wait for their results.

The llama engine's work runs on it too: ggml's OpenMP threads and torch's are one libgomp in the process.

It also orders the work: tasks run one at a time; urgent ones (what a person waits for) are taken before
background ones (scoring the path for the accounting); a background task calls :meth:`pause_if_wanted` between
chunks, which runs the urgent tasks queued meanwhile right there, so a generation waits at most one chunk.
"""

from __future__ import annotations

import asyncio
import atexit
import heapq
import itertools
import os
import threading
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

from ..errors import Cancelled

T = TypeVar("T")


URGENT, BACKGROUND = 0, 1


class ModelThread:
    def __init__(self, name: str = "loomwork-model") -> None:
        self._name = name
        self._order = itertools.count()
        self._start()
        # a forked child has no model thread and may hold copies of locks taken when it forked: start afresh
        os.register_at_fork(after_in_child=self._start)

    def _start(self) -> None:
        self._queue: list = []  # (priority, order, fn, future)
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None
        self._running = False  # a task from the queue is under way
        # held by the model thread while it runs a task, and by another thread that calls a backend's work
        # directly (tests, scripts): one piece of work at a time either way
        self._busy = threading.RLock()

    # -- handing work over -------------------------------------------------------------------------------------

    def on_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, fn: Callable[[], T], urgent: bool = True) -> "Future[T]":
        future: Future = Future()
        if self.on_thread():  # work that hands more work over: run it now, in order
            _execute(fn, future)
            return future
        with self._ready:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            heapq.heappush(self._queue, (URGENT if urgent else BACKGROUND, next(self._order), fn, future))
            self._ready.notify()
        return future

    def run(self, fn: Callable[[], T], urgent: bool = True) -> T:
        """Run ``fn`` on the model thread and wait for its result (its exception is raised here)."""
        return self.submit(fn, urgent).result()

    async def call(self, fn: Callable[[], T], urgent: bool = True) -> T:
        """``run`` for async code: the event loop goes on while the model thread works."""
        return await asyncio.wrap_future(self.submit(fn, urgent))

    def _loop(self) -> None:
        while True:
            with self._ready:
                while not self._queue:
                    self._ready.wait()
                _p, _o, fn, future = heapq.heappop(self._queue)
                self._running = True
            try:
                with self._busy:
                    _execute(fn, future)
            finally:
                with self._ready:
                    self._running = False
                    self._ready.notify_all()

    def drain(self, timeout: float) -> bool:
        """Drop the work not started yet and wait up to ``timeout`` s for the task under way (a generation whose
        reader left stops at its next step or chunk). At exit: a process that ends while this thread is inside
        torch aborts ("terminate called without an active exception"). True when the thread is idle."""
        with self._ready:
            for _p, _o, _fn, future in self._queue:
                future.cancel()
            self._queue.clear()
            return self._ready.wait_for(lambda: not self._running, timeout)

    # -- what the work calls -------------------------------------------------------------------------------------

    @contextmanager
    def urgent(self) -> Iterator[None]:
        with self._busy:
            yield

    @contextmanager
    def background(self, cancel: threading.Event | None = None) -> Iterator["ModelThread"]:
        with self._busy:
            if cancel is not None and cancel.is_set():
                raise Cancelled("cancelled")
            yield self

    def pause_if_wanted(self, cancel: threading.Event | None = None) -> None:
        """Between chunks of background work: stop if cancelled; run the urgent work queued meanwhile first."""
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")
        if not self.on_thread():
            return
        while True:
            with self._ready:
                if not self._queue or self._queue[0][0] != URGENT:
                    break
                _p, _o, fn, future = heapq.heappop(self._queue)
            _execute(fn, future)
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")


def _execute(fn: Callable, future: Future) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = fn()
    except BaseException as exc:  # handed to whoever waits for it
        future.set_exception(exc)
    else:
        future.set_result(result)


_SHARED: ModelThread | None = None
_SHARED_LOCK = threading.Lock()


def shared() -> ModelThread:
    """The process's model thread (one for every torch model, see the module's docstring)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = ModelThread()
            atexit.register(_SHARED.drain, 30.0)
        return _SHARED
