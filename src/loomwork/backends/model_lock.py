"""One forward pass at a time on a local model, with two priorities.

The CPU has no room for two forward passes, so a backend runs one at a time. Work a person waits for (generation,
a next-token view, the lens) takes the lock with ``urgent()``. Background work (scoring the path for the
accounting) takes it with ``background()`` and calls ``pause_if_wanted()`` between chunks: while urgent work waits,
the background work lets go and waits until no urgent work is left, so a generation never waits for more than one
chunk of scoring.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator

from ..errors import LoomworkError


class Cancelled(LoomworkError):
    """Background work that nobody wants any more (the page moved on)."""


class ModelLock:
    def __init__(self) -> None:
        self._model = threading.Lock()
        self._count = threading.Lock()
        self._urgent_waiting = 0

    @contextmanager
    def urgent(self) -> Iterator[None]:
        with self._count:
            self._urgent_waiting += 1
        try:
            self._model.acquire()
        finally:
            with self._count:
                self._urgent_waiting -= 1
        try:
            yield
        finally:
            self._model.release()

    def _acquire_background(self, cancel: threading.Event | None) -> None:
        while True:
            if cancel is not None and cancel.is_set():
                raise Cancelled("cancelled")
            if self._urgent_waiting == 0 and self._model.acquire(timeout=0.05):
                if self._urgent_waiting == 0:
                    return
                self._model.release()  # urgent work arrived meanwhile: it goes first
            time.sleep(0.002)

    @contextmanager
    def background(self, cancel: threading.Event | None = None) -> Iterator["ModelLock"]:
        self._acquire_background(cancel)
        try:
            yield self
        finally:
            self._model.release()

    def pause_if_wanted(self, cancel: threading.Event | None = None) -> None:
        """Between chunks of background work: stop if cancelled; let urgent work run first if any waits."""
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")
        if self._urgent_waiting:
            self._model.release()
            try:
                self._acquire_background(cancel)
            except BaseException:
                self._model.acquire()  # the context manager releases it on the way out
                raise
