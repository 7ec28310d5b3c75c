"""Waking the subscribers of a tree's events (docs/teams.md, "Live trees").

A change committed by this process wakes its subscribers at once (the store's ``on_commit``). On PostgreSQL a
listener thread LISTENs for the NOTIFY every change sends, so changes made through any other server process (or
the CLI) wake them too. On SQLite another process's change (the CLI's) is found by one look at the watched trees'
versions every ``SQLITE_LOOK_S``, for all of this server's subscribers together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

from ..store import Store
from ..store import events
from ..store.events import CHANNEL

log = logging.getLogger("loomwork.web")
SQLITE_LOOK_S = 0.5  # another process's change on SQLite is seen within this long
WAIT_S = 5.0  # a subscriber looks again after this long whatever happened (a safety net, and its keepalive)


class Hub:
    def __init__(self, store: Store):
        self.store = store
        self.look_s = WAIT_S
        self._versions: dict[str, int] = {}
        self._poller: asyncio.Task | None = None
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        store.on_commit.append(self.changed)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if not self.store.sqlite and self._thread is None:
            self._thread = threading.Thread(target=self._listen, name="loomwork-listen", daemon=True)
            self._thread.start()
        if self.store.sqlite and (self._poller is None or self._poller.done()):
            self._poller = self._loop.create_task(self._look_around())

    def stop(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.cancel()
        with contextlib.suppress(ValueError):
            self.store.on_commit.remove(self.changed)

    def changed(self, tree_ids: set[str]) -> None:
        """From any thread: these trees changed."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._wake, tree_ids)

    def _wake(self, tree_ids: set[str]) -> None:
        for tree_id in tree_ids:
            for waiter in self._waiters.get(tree_id, ()):
                waiter.set()

    @contextlib.contextmanager
    def watching(self, tree_id: str):
        """An event that is set when the tree changes; registered before the caller reads, so nothing committed
        after the read can be missed."""
        waiter = asyncio.Event()
        self._waiters.setdefault(tree_id, set()).add(waiter)
        try:
            yield waiter
        finally:
            group = self._waiters.get(tree_id)
            if group is not None:
                group.discard(waiter)
                if not group:
                    del self._waiters[tree_id]

    async def wait(self, waiter: asyncio.Event) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(waiter.wait(), self.look_s)

    async def _look_around(self) -> None:
        """SQLite: wake the subscribers of any watched tree whose version another process moved."""
        while not self._stop.is_set():
            await asyncio.sleep(SQLITE_LOOK_S)
            watched = list(self._waiters)
            if not watched:
                continue
            try:
                now = await asyncio.to_thread(self._read_versions, watched)
            except Exception as exc:  # noqa: BLE001 (a busy or vanished file: the next look tries again)
                log.warning("looking for changes failed: %s", exc)
                continue
            moved = {t for t in watched if now.get(t, -1) > self._versions.get(t, -1) or t not in now}
            self._versions.update(now)
            if moved:
                self._wake(moved)

    def seen(self, tree_id: str, version: int) -> None:
        """A subscriber has read the tree up to ``version``: a look finding it there wakes nobody."""
        self._versions[tree_id] = max(version, self._versions.get(tree_id, 0))

    def _read_versions(self, tree_ids: list[str]) -> dict[str, int]:
        with self.store.read() as tx:
            return events.versions(tx.conn, tree_ids)

    def _listen(self) -> None:
        """PostgreSQL: LISTEN on a connection of its own, and wake subscribers at each NOTIFY; reconnect after a
        failure (subscribers look again every POSTGRES_LOOK_S meanwhile)."""
        import psycopg

        url = self.store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while not self._stop.is_set():
            try:
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.changed(set(self._waiters))  # what happened while not listening: look again
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self.changed({note.payload})
            except Exception as exc:  # noqa: BLE001 (a dropped connection: log, wait, connect again)
                log.warning("listening for changes failed (%s); trying again", exc)
                self._stop.wait(1.0)
