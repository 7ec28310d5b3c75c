"""Progress for long work (model conversion, loading, generation): shown on a terminal, silent when piped."""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import Iterator


def interactive() -> bool:
    """LOOMWORK_PROGRESS=1/0 forces progress on/off; otherwise only when stderr is a terminal."""
    forced = os.environ.get("LOOMWORK_PROGRESS")
    if forced is not None:
        return forced not in ("0", "", "false", "no")
    return sys.stderr.isatty()


@contextmanager
def status(message: str) -> Iterator[None]:
    """Print ``message…`` before and the elapsed time after a long step."""
    if not interactive():
        yield
        return
    start = time.monotonic()
    print(f"{message}…", file=sys.stderr, flush=True)
    yield
    print(f"  done in {time.monotonic() - start:.1f} s", file=sys.stderr, flush=True)


def bar(total: int, desc: str, unit: str = "tok"):
    """A tqdm bar on stderr, or a silent one."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not interactive(), leave=False)


class Phases:
    """``update(what, done, total)`` for work in named phases (sampling, then scoring with each grader): one bar
    per phase on stderr, or nothing when piped."""

    def __init__(self, unit: str = "it"):
        self._bar = None
        self._what: str | None = None
        self._unit = unit

    def update(self, what: str, done: int, total: int) -> None:
        if what != self._what:
            self.close()
            self._what, self._bar = what, bar(total, what, self._unit)
        self._bar.n = done
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
