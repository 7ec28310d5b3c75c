"""The Store: opens a database (SQLite file or any SQLAlchemy URL), migrates it, and hands out transactions.

All SQL of loomwork lives in store/. Reads and writes go through a :class:`Tx`, which wraps one connection inside
one transaction, so that every operation built from several statements is atomic.

Concurrency (docs/concurrency.md): ``store.read()`` is a read transaction that never waits for writers (SQLite WAL,
PostgreSQL MVCC). ``store.tx()`` is a write transaction that waits for other writers instead of failing: on SQLite
it takes the database's write lock at BEGIN (BEGIN IMMEDIATE, queued first on a lock of this process so that its
own threads take turns without SQLite's sleep-and-poll), on PostgreSQL each operation locks the row of the tree it
changes (``Tx.lock``), so that checks such as "this move makes no cycle" and the write they allow are one decision.
PostgreSQL serialization failures and deadlocks surface as :class:`Transient`, which :func:`retrying` runs again.
"""

from __future__ import annotations

import functools
import json
import random
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import orjson
from sqlalchemy import Engine, create_engine, event, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, OperationalError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from .. import config
from ..errors import Busy, InvalidInput, StoreError, Transient
from . import schema
from .migrations import MIGRATIONS, TABLES_BY_VERSION
from .queries import Tx

_SQLITE_MAGIC = b"SQLite format 3\x00"


def _dumps(value) -> str:
    # orjson is several times faster than json for the token and meta columns, which dominate big imports;
    # json takes what orjson refuses (str subclasses as keys, say), but never lone surrogates: json would write
    # them as escapes that no reader (orjson, PostgreSQL's JSONB) accepts back
    try:
        return orjson.dumps(value).decode()
    except TypeError as exc:
        if "surrogates" in str(exc):
            raise InvalidInput("text that is not valid Unicode (a lone surrogate) cannot be stored") from None
        return json.dumps(value)


WAIT_S = 60.0  # how long a write waits for other writers before it gives up with Busy
_RETRIES = 10  # attempts of a write that PostgreSQL aborted as a serialization failure or deadlock
_TRANSIENT_SQLSTATES = {"40001", "40P01"}  # serialization_failure, deadlock_detected
T = TypeVar("T")


def _to_url(db: str) -> str:
    if "://" in db:
        return db
    return "sqlite:///" + str(Path(db).expanduser().resolve())


def _check_sqlite_file(path: Path, create_parents: bool) -> None:
    if path.is_dir():
        raise StoreError(f"{path} is a directory, not a database file")
    if not path.exists() or path.stat().st_size == 0:
        parent = path.parent
        if not parent.is_dir():
            above = next((p for p in (parent, *parent.parents) if p.exists()), None)
            if above is not None and not above.is_dir():
                raise StoreError(f"cannot create a database at {path}: {above} is a file, not a directory")
            if not create_parents:
                raise StoreError(f"cannot create a database at {path}: the directory {parent} does not exist")
            parent.mkdir(parents=True, exist_ok=True)
        return
    with path.open("rb") as f:
        if f.read(16) != _SQLITE_MAGIC:
            raise StoreError(f"{path} is not a SQLite database (corrupt, or some other kind of file)")


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # pysqlite would otherwise commit DDL implicitly, so a failed migration could leave half a schema behind;
    # taking over BEGIN ourselves (the SQLAlchemy-documented recipe) makes every transaction real.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={int(WAIT_S * 1000)}")  # other processes' writers: wait, do not fail
    cur.close()
    # SQLite's lower() folds only A-Z; search's scan folds as its index and Python do (store/search.py)
    dbapi_conn.create_function("loomwork_lower", 1, lambda t: t.lower() if isinstance(t, str) else t,
                               deterministic=True)


def _sqlite_begin(conn) -> None:
    # A write transaction takes the write lock at BEGIN. A deferred one that reads and then writes must upgrade
    # its lock, and when another writer committed meanwhile SQLite refuses the upgrade at once, without using the
    # busy timeout: that is what refused 260 of 335 concurrent writes. Reads stay deferred and never wait (WAL).
    write = conn.get_execution_options().get("loomwork_write", True)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def retrying(fn: Callable[..., T]) -> Callable[..., T]:
    """Run a write operation again when PostgreSQL aborted its transaction as a serialization failure or a
    deadlock. Safe because the aborted transaction changed nothing; each attempt re-reads and re-checks."""

    @functools.wraps(fn)
    def run(*args, **kwargs) -> T:
        for attempt in range(_RETRIES):
            try:
                return fn(*args, **kwargs)
            except Transient:
                if attempt == _RETRIES - 1:
                    raise
                time.sleep(random.uniform(0, 0.005 * 2 ** attempt))
        raise AssertionError("unreachable")

    return run


class Store:
    def __init__(self, engine: Engine, label: str):
        self.engine = engine
        self.label = label
        self.sqlite = engine.dialect.name == "sqlite"
        # SQLite has one writer at a time: this process's threads queue here, in order, instead of polling the
        # file lock with SQLite's growing sleeps (which gave p95 write latencies of a second under load).
        self._write_lock = threading.Lock() if self.sqlite else None
        self._local = threading.local()
        # called with the ids of the trees a transaction changed, once it has committed (store/events.py)
        self.on_commit: list[Callable[[set[str]], None]] = []
        # (not SQLAlchemy's "commit" event: it fires before the database has committed, and a subscriber woken
        # then reads the tree without the change)
        event.listen(engine, "rollback", lambda conn: conn.info.pop("loomwork_changed", None))

    @classmethod
    def open(cls, db: str | None = None, *, migrate: bool = True) -> "Store":
        """Open (creating if needed) the database at ``db``: a file path or a SQLAlchemy URL.

        Only the data directory (LOOMWORK_HOME) gets created when missing: any other path must name an existing
        directory, so that a typo does not leave stray directories behind."""
        raw = db or config.default_db_url()
        if not isinstance(raw, str) or not raw.strip() or "\x00" in raw or any("\ud800" <= c <= "\udfff" for c in raw):
            raise StoreError(f"not a database path or URL: {raw!r} (it must be valid UTF-8 text)")
        if raw.strip() in (":memory:", "sqlite://", "sqlite:///:memory:"):
            raise StoreError("an in-memory database forgets everything when the command ends: name a file")
        try:
            url = make_url(_to_url(raw))
        except (ArgumentError, ValueError) as exc:
            raise StoreError(f"cannot understand database URL {raw!r}: {exc}") from None
        label = url.render_as_string(hide_password=True)
        sqlite_file = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
        if sqlite_file:
            path = Path(url.database)
            _check_sqlite_file(path, create_parents=path.parent.resolve().is_relative_to(config.home().resolve()))
        try:
            engine = create_engine(url, json_serializer=_dumps, json_deserializer=orjson.loads,
                                   **({"connect_args": {"timeout": WAIT_S}} if sqlite_file else
                                      {"pool_size": 10, "max_overflow": 30, "pool_timeout": WAIT_S}
                                      if url.get_backend_name() == "postgresql" else {}))
        except Exception as exc:  # missing driver, bad options
            raise StoreError(f"cannot open database {label}: {exc}") from None
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
            event.listen(engine, "begin", _sqlite_begin)
        store = cls(engine, label)
        if migrate:
            store.migrate()
            store._verify_tables()
            if store.sqlite:
                # readers (the web UI) never block the writer. Set here, once the file is known to be ours: the
                # journal mode is kept in the file, and another program's database must be left as it was.
                with store.engine.connect() as conn:
                    conn.connection.driver_connection.execute("PRAGMA journal_mode=WAL")
        return store

    def _verify_version_tables(self, version: int) -> None:
        """Before migrating: the tables a database at ``version`` must already have."""
        with self.engine.connect().execution_options(loomwork_write=False) as conn:
            have = set(inspect(conn).get_table_names())
        for v in range(1, version + 1):
            for name in TABLES_BY_VERSION.get(v, ()):
                if name not in have:
                    raise StoreError(f"{self.label} lacks loomwork's table {name}: not a loomwork database")

    def _verify_tables(self) -> None:
        """Refuse a database whose tables have our names but not our columns (another program's, or damaged)."""
        try:
            with self.engine.connect().execution_options(loomwork_write=False) as conn:
                inspector = inspect(conn)
                have = set(inspector.get_table_names())
                for table in schema.metadata.sorted_tables:
                    if table.name not in have:
                        raise StoreError(f"{self.label} lacks loomwork's table {table.name}: not a loomwork database")
                    missing = {c.name for c in table.columns} - {c["name"] for c in inspector.get_columns(table.name)}
                    if missing:
                        raise StoreError(f"{self.label} has a table {table.name} that is not loomwork's (it lacks "
                                         f"{', '.join(sorted(missing))})")
                app = conn.execute(select(schema.meta.c.value).where(schema.meta.c.key == "app")).scalar()
        except (OperationalError, DatabaseError) as exc:
            raise StoreError(f"cannot read database {self.label}: {exc.orig or exc}") from None
        if app != "loomwork":
            raise StoreError(f"{self.label} has a loomwork_meta table that another program wrote (app={app!r})")

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def tx(self) -> Iterator[Tx]:
        """One write transaction: committed when the block ends, rolled back if it raises. It waits for other
        writers (up to WAIT_S) rather than failing; operations on a tree start with ``tx.lock(node_id)``."""
        if getattr(self._local, "writing", False):
            raise RuntimeError("a write transaction was opened inside another on the same thread: it would wait "
                               "for itself (do the work in the outer transaction)")
        with self._errors(), self._writer():
            self._local.writing = True
            changed = None
            try:
                with self.engine.begin() as conn:
                    tx = Tx(conn)
                    yield tx
                    if tx.journal is not None:
                        tx.journal.write()
                    changed = conn.info.pop("loomwork_changed", None)
            finally:
                self._local.writing = False
        if changed:  # committed: now whoever follows these trees may read the change
            for listener in list(self.on_commit):
                listener(changed)

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """One read-only transaction: a consistent snapshot that never waits for writers."""
        options = {"loomwork_write": False} if self.sqlite else {"postgresql_readonly": True}
        with self._errors(), self.engine.connect().execution_options(**options) as conn, conn.begin():
            yield Tx(conn, readonly=True)

    @contextmanager
    def _writer(self) -> Iterator[None]:
        if self._write_lock is None:
            yield
            return
        if not self._write_lock.acquire(timeout=WAIT_S):
            raise Busy(f"{self.label} stayed busy with other writes for more than {WAIT_S:.0f} s")
        try:
            yield
        finally:
            self._write_lock.release()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Driver errors become one clear StoreError; contention gets its own kinds (Busy, Transient)."""
        try:
            yield
        except (OperationalError, DatabaseError) as exc:
            orig = exc.orig or exc
            if getattr(orig, "sqlstate", None) in _TRANSIENT_SQLSTATES:
                raise Transient(f"{self.label}: {orig}") from None
            if self.sqlite and ("database is locked" in str(orig) or "database is busy" in str(orig)):
                raise Busy(f"{self.label} stayed locked by another writer for more than {WAIT_S:.0f} s") from None
            raise StoreError(f"database error on {self.label}: {orig}") from None
        except StatementError as exc:  # raised while binding parameters, before the database saw anything
            if isinstance(exc.orig, (InvalidInput, UnicodeEncodeError)):
                raise InvalidInput("text that is not valid Unicode (a lone surrogate) cannot be stored") from None
            raise StoreError(f"database error on {self.label}: {exc.orig or exc}") from None
        except PoolTimeout:
            raise Busy(f"no free connection to {self.label} for {WAIT_S:.0f} s (too many requests at once)") from None
        except UnicodeEncodeError as exc:  # the last guard; validation names the field before we get here
            raise InvalidInput(f"text that is not valid Unicode cannot be stored ({exc.reason}: "
                               f"{exc.object[exc.start:exc.end]!r})") from None

    # -- schema versions ---------------------------------------------------------------------------------------

    def version(self) -> int:
        try:
            with self.engine.connect().execution_options(loomwork_write=False) as conn:
                tables = set(inspect(conn).get_table_names())
                if schema.meta.name not in tables:
                    if tables:
                        names = ", ".join(sorted(tables)[:5])
                        raise StoreError(f"{self.label} is not a loomwork database (it has other tables: {names})")
                    return 0
                row = conn.execute(select(schema.meta.c.value).where(schema.meta.c.key == "schema_version")).first()
        except (OperationalError, DatabaseError) as exc:
            raise StoreError(f"cannot read database {self.label}: {exc.orig or exc}") from None
        if row is None:
            raise StoreError(f"{self.label} has a loomwork_meta table but no schema version: not a loomwork database")
        return int(row[0])

    def migrate(self, target: int | None = None) -> int:
        """Apply pending migrations up to ``target`` (default: the newest). Returns the version reached."""
        target = len(MIGRATIONS) if target is None else target
        current = self.version()
        if current > len(MIGRATIONS):
            raise StoreError(
                f"{self.label} has schema version {current}, newer than this loomwork knows ({len(MIGRATIONS)}): "
                "upgrade loomwork"
            )
        if current and current < target:
            self._verify_version_tables(current)
        for version in range(current, target):
            try:
                with self._migration_connection() as conn, conn.begin():
                    if self._migrated_meanwhile(conn, version):
                        continue  # another process applied this step while we waited for the write lock
                    if version == 0:
                        schema.meta.create(conn)
                        conn.execute(schema.meta.insert(), [{"key": "app", "value": "loomwork"},
                                                            {"key": "schema_version", "value": "0"}])
                    MIGRATIONS[version](conn)
                    if self.sqlite and conn.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
                        raise StoreError(f"migration to version {version + 1} would break foreign keys on "
                                         f"{self.label}; nothing was changed")
                    conn.execute(schema.meta.update().where(schema.meta.c.key == "schema_version")
                                 .values(value=str(version + 1)))
            except (OperationalError, DatabaseError) as exc:
                raise StoreError(f"migration to version {version + 1} failed on {self.label}: {exc.orig or exc}") from None
        return max(current, target)

    @contextmanager
    def _migration_connection(self):
        """A connection for migrations. On SQLite with foreign-key enforcement off (only possible outside a
        transaction), as SQLite's procedure for rebuilding a table requires; the migration then checks the keys
        itself (PRAGMA foreign_key_check) before it commits."""
        with self.engine.connect() as conn:
            if not self.sqlite:
                yield conn
                return
            raw = conn.connection.driver_connection
            raw.execute("PRAGMA foreign_keys=OFF")
            try:
                yield conn
            finally:
                raw.execute("PRAGMA foreign_keys=ON")

    def _migrated_meanwhile(self, conn, version: int) -> bool:
        if conn.dialect.name == "postgresql":  # SQLite's BEGIN IMMEDIATE already serializes; PostgreSQL needs this
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7353661)")
        if schema.meta.name not in inspect(conn).get_table_names():
            return False
        row = conn.execute(select(schema.meta.c.value).where(schema.meta.c.key == "schema_version")).first()
        return row is not None and int(row[0]) > version

    # -- convenient reads (each one short transaction) --------------------------------------------------------

    def node(self, node_id: str):
        with self.read() as tx:
            return tx.node(node_id)

    def path(self, node_id: str):
        with self.read() as tx:
            return tx.path(node_id)

    def children(self, node_id: str, include_archived: bool = False):
        with self.read() as tx:
            return tx.children(node_id, include_archived=include_archived)

    def tree(self, tree_id: str):
        with self.read() as tx:
            return tx.tree(tree_id)

    def generation(self, gen_id: str):
        with self.read() as tx:
            return tx.generation(gen_id)

    def trees(self):
        with self.read() as tx:
            return tx.trees()

    def resolve(self, ref: str):
        with self.read() as tx:
            return tx.resolve(ref)

    def sql(self, statement: str, **params):
        """Raw SQL for diagnostics and tests; the library itself never needs it."""
        with self.tx() as tx:
            result = tx.conn.execute(text(statement), params)
            return list(result) if result.returns_rows else []
