"""``loomwork backup FILE`` and ``restore FILE``: a consistent copy of a whole database while it is in use.

A backup is always a SQLite file of loomwork's schema, whatever the database was, so it opens anywhere with
``--db FILE``. From SQLite it is SQLite's online backup (pages copied from one read snapshot; writers carry on).
From PostgreSQL every table is copied inside one REPEATABLE READ, READ ONLY transaction: one snapshot of all of
them. (``pg_dump`` is the other way for PostgreSQL; docs/concurrency.md.) The file is written beside its final
name and renamed into place only when complete, so a crash never leaves half a backup under that name.

Restore copies a backup's rows into the database in one transaction: all or nothing. It refuses a database that
holds trees unless asked to replace them; an older backup is migrated (on a temporary copy) first.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from sqlalchemy import Table, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from .. import validate
from ..errors import InvalidInput, NotFound, StoreError
from . import schema
from .store import Store

# Parents before children for inserting (nodes' own parent links are set after all nodes are in).
TABLES: list[Table] = [schema.trees, schema.generations, schema.nodes, schema.node_tags, schema.oplog,
                       schema.choices, schema.scores, schema.queues, schema.critiques, schema.ratings, schema.outcomes,
                       schema.steering_vectors, schema.graders, schema.grader_scores, schema.accounts,
                       schema.tree_roles, schema.queue_roles, schema.events, schema.adjudications, schema.node_reads]
# loomwork_meta rows a backup keeps (the others say what the file is, and each database writes its own); presence
# (who had a tree open) is not kept at all
SECRETS = ("rater_pseudonym_salt",)
_BATCH = 2000


def counts(store: Store) -> dict[str, int]:
    with store.read() as tx:
        return {t.name: tx.conn.execute(select(func.count()).select_from(t)).scalar_one() for t in TABLES}


def backup(store: Store, dest: str | Path, overwrite: bool = False) -> dict[str, int]:
    """Write a consistent copy of the database to ``dest`` (a new SQLite file). Returns its row counts."""
    dest = Path(validate.unicode_ok(str(dest), "the backup's file name"))
    live = store.engine.url.database if store.sqlite else None
    if live and dest.exists() and dest.resolve() == Path(live).resolve():
        raise InvalidInput(f"{dest} is the database itself: back it up to another file")
    if dest.is_dir():
        raise InvalidInput(f"{dest} is a directory: name the backup file")
    if not dest.parent.is_dir():
        raise InvalidInput(f"cannot write {dest}: the directory {dest.parent} does not exist")
    if dest.exists() and not overwrite:
        raise InvalidInput(f"{dest} exists already (pass --force to overwrite it)")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if store.sqlite:
            _sqlite_backup(store, tmp)
        else:
            _copy_tables(store, tmp)
        with Store.open(str(tmp), migrate=False) as copy:
            got = counts(copy)
        os.replace(tmp, dest)
    except (sqlite3.OperationalError, OSError, SQLAlchemyError) as exc:  # a full disk, a vanished folder: one line
        raise StoreError(f"could not write the backup {dest}: {str(exc).splitlines()[0][:200]} "
                           "(nothing was written under that name)") from None
    finally:
        tmp.unlink(missing_ok=True)
    return got


def _sqlite_backup(store: Store, tmp: Path) -> None:
    raw = store.engine.raw_connection()
    try:
        target = sqlite3.connect(tmp)
        try:
            raw.driver_connection.backup(target)  # one pass from one snapshot; WAL writers are not blocked
        finally:
            target.close()
    finally:
        raw.close()


def _copy_tables(store: Store, tmp: Path) -> None:
    tmp.unlink()
    with Store.open(str(tmp)) as copy, copy.tx() as out:
        out.conn.exec_driver_sql("PRAGMA defer_foreign_keys=ON")
        options = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
        with store.engine.connect().execution_options(**options) as conn, conn.begin():
            for table in TABLES:
                _copy(conn, out.conn, table)
            _copy_secrets(conn, out.conn)


def _copy(source, target, table: Table) -> None:
    rows = source.execution_options(yield_per=_BATCH).execute(select(table))
    for batch in rows.partitions(_BATCH):
        target.execute(insert(table), [dict(r._mapping) for r in batch])


def check_backup(source: str | Path) -> Path:
    """The backup file, if it is one this loomwork can restore (read-only: the file is not changed)."""
    source = Path(validate.unicode_ok(str(source), "the backup's file name"))
    if not source.is_file():
        raise NotFound(f"no backup file {source}")
    try:
        with Store.open(str(source), migrate=False) as probe:
            probe.version()
    except StoreError as exc:
        raise InvalidInput(f"{source} cannot be restored: {exc}") from None
    return source


def restore(store: Store, source: str | Path, replace: bool = False) -> dict[str, int]:
    """Put a backup's rows into ``store`` in one transaction. Returns the counts restored."""
    source = check_backup(source)
    with tempfile.TemporaryDirectory() as work:
        copy_path = Path(work) / "restore.sqlite"
        shutil.copyfile(source, copy_path)
        try:
            backup_store = Store.open(str(copy_path))  # refuses what is not a loomwork database; migrates an old one
        except StoreError as exc:
            reason = str(exc).replace(f"sqlite:///{copy_path}", "it").replace(str(copy_path), "it")
            raise InvalidInput(f"{source} cannot be restored: {reason}") from None
        with backup_store:
            with store.tx() as tx, backup_store.read() as src:
                have = tx.conn.execute(select(func.count()).select_from(schema.trees)).scalar_one()
                if have and not replace:
                    raise InvalidInput(f"{store.label} holds {have} tree(s): restore into an empty database, or "
                                       "pass --replace to replace everything in it with the backup")
                if store.sqlite:
                    tx.conn.exec_driver_sql("PRAGMA defer_foreign_keys=ON")
                for table in reversed(TABLES):
                    if table is schema.nodes:
                        tx.conn.execute(update(schema.nodes).values(parent_id=None))
                    tx.conn.execute(delete(table))
                for table in TABLES:
                    _copy_restoring(src.conn, tx.conn, table)
                tx.conn.execute(delete(schema.presence))
                _copy_secrets(src.conn, tx.conn)
                _reset_sequences(tx.conn)
            return counts(backup_store)


def _copy_secrets(source, target) -> None:
    """The rater pseudonyms' secret goes with the ratings: the same rater keeps the same id after a restore."""
    meta = schema.meta
    rows = source.execute(select(meta).where(meta.c.key.in_(SECRETS))).all()
    target.execute(delete(meta).where(meta.c.key.in_(SECRETS)))
    if rows:
        target.execute(insert(meta), [dict(r._mapping) for r in rows])


def _copy_restoring(source, target, table: Table) -> None:
    if table is not schema.nodes:
        _copy(source, target, table)
        return
    # parents may come after their children in any order of rows (after a move): links go in once all exist
    links = []
    for batch in source.execution_options(yield_per=_BATCH).execute(select(table)).partitions(_BATCH):
        rows = [dict(r._mapping) for r in batch]
        links += [{"b_id": r["id"], "b_parent": r["parent_id"]} for r in rows if r["parent_id"] is not None]
        target.execute(insert(table), [{**r, "parent_id": None} for r in rows])
    stmt = update(schema.nodes).where(schema.nodes.c.id == bindparam("b_id")).values(parent_id=bindparam("b_parent"))
    for i in range(0, len(links), _BATCH):
        target.execute(stmt, links[i: i + _BATCH])


def _reset_sequences(conn) -> None:
    """PostgreSQL hands out serial numbers from a sequence that inserted values do not advance."""
    if conn.dialect.name != "postgresql":
        return
    for table in ("nodes", "oplog"):
        conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'seq'), "
                             f"COALESCE((SELECT max(seq) FROM {table}), 0) + 1, false)")
