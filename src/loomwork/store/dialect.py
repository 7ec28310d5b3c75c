"""SQL that differs between SQLite and PostgreSQL, or that every query module needs the same way."""

from __future__ import annotations

from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert


def insert_ignoring_duplicates(conn: Connection, table):
    """INSERT that skips a row whose primary key exists (ON CONFLICT DO NOTHING in both dialects)."""
    dialect = sqlite_insert if conn.dialect.name == "sqlite" else pg_insert
    return dialect(table).on_conflict_do_nothing()


def escape_like(text: str) -> str:
    """``text`` matched literally inside a LIKE pattern (with ESCAPE '\\')."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
