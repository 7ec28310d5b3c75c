"""The Store: opens a database (SQLite file or any SQLAlchemy URL), migrates it, and hands out transactions.

All SQL of loomwork lives in store/. Reads and writes go through a :class:`Tx`, which wraps one connection inside
one transaction, so that every operation built from several statements is atomic.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import json

import orjson
from sqlalchemy import Engine, create_engine, event, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, OperationalError

from .. import config
from ..errors import StoreError
from . import schema
from .migrations import MIGRATIONS
from .queries import Tx

_SQLITE_MAGIC = b"SQLite format 3\x00"


def _dumps(value) -> str:
    # orjson is several times faster than json for the token and meta columns, which dominate big imports;
    # json takes what orjson refuses (str subclasses as keys, say)
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


def _to_url(db: str) -> str:
    if "://" in db:
        return db
    return "sqlite:///" + str(Path(db).expanduser().resolve())


def _check_sqlite_file(path: Path) -> None:
    if not path.exists() or path.stat().st_size == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        return
    with path.open("rb") as f:
        if f.read(16) != _SQLITE_MAGIC:
            raise StoreError(f"{path} is not a SQLite database (corrupt, or some other kind of file)")


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # pysqlite would otherwise commit DDL implicitly, so a failed migration could leave half a schema behind;
    # taking over BEGIN ourselves (the SQLAlchemy-documented recipe) makes every transaction real.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers (the web UI) never block the writer
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


class Store:
    def __init__(self, engine: Engine, label: str):
        self.engine = engine
        self.label = label

    @classmethod
    def open(cls, db: str | None = None, *, migrate: bool = True) -> "Store":
        """Open (creating if needed) the database at ``db``: a file path or a SQLAlchemy URL."""
        raw = db or config.default_db_url()
        try:
            url = make_url(_to_url(raw))
        except ArgumentError as exc:
            raise StoreError(f"cannot understand database URL {raw!r}: {exc}") from None
        label = url.render_as_string(hide_password=True)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            _check_sqlite_file(Path(url.database))
        try:
            engine = create_engine(url, json_serializer=_dumps, json_deserializer=orjson.loads)
        except Exception as exc:  # missing driver, bad options
            raise StoreError(f"cannot open database {label}: {exc}") from None
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
            event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))
        store = cls(engine, label)
        if migrate:
            store.migrate()
        return store

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def tx(self) -> Iterator[Tx]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        try:
            with self.engine.begin() as conn:
                tx = Tx(conn)
                yield tx
                if tx.journal is not None:
                    tx.journal.write()
        except (OperationalError, DatabaseError) as exc:
            raise StoreError(f"database error on {self.label}: {exc.orig or exc}") from None

    # -- schema versions ---------------------------------------------------------------------------------------

    def version(self) -> int:
        try:
            with self.engine.connect() as conn:
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
        for version in range(current, target):
            try:
                with self.engine.begin() as conn:
                    if version == 0:
                        schema.meta.create(conn)
                        conn.execute(schema.meta.insert(), [{"key": "app", "value": "loomwork"},
                                                            {"key": "schema_version", "value": "0"}])
                    MIGRATIONS[version](conn)
                    conn.execute(schema.meta.update().where(schema.meta.c.key == "schema_version")
                                 .values(value=str(version + 1)))
            except (OperationalError, DatabaseError) as exc:
                raise StoreError(f"migration to version {version + 1} failed on {self.label}: {exc.orig or exc}") from None
        return max(current, target)

    # -- convenient reads (each one short transaction) --------------------------------------------------------

    def node(self, node_id: str):
        with self.tx() as tx:
            return tx.node(node_id)

    def path(self, node_id: str):
        with self.tx() as tx:
            return tx.path(node_id)

    def children(self, node_id: str, include_archived: bool = False):
        with self.tx() as tx:
            return tx.children(node_id, include_archived=include_archived)

    def tree(self, tree_id: str):
        with self.tx() as tx:
            return tx.tree(tree_id)

    def generation(self, gen_id: str):
        with self.tx() as tx:
            return tx.generation(gen_id)

    def trees(self):
        with self.tx() as tx:
            return tx.trees()

    def resolve(self, ref: str):
        with self.tx() as tx:
            return tx.resolve(ref)

    def sql(self, statement: str, **params):
        """Raw SQL for diagnostics and tests; the library itself never needs it."""
        with self.tx() as tx:
            result = tx.conn.execute(text(statement), params)
            return list(result) if result.returns_rows else []
