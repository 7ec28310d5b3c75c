"""Commands that look after a database: check, backup, restore."""

from __future__ import annotations

from pathlib import Path

import click

from ..store import Store
from ..store import backup as backups
from ..store.check import check as check_store
from ..validate import terminal_safe
from . import Context, cli, emit_json, pass_ctx
from .render import plural


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON: {ok, counts, problems: [{kind, id, message}]}.")
@pass_ctx
def check(ctx: Context, as_json: bool) -> None:
    """Verify every invariant of the database and list each problem with the id of its row (exit 1 if any).

    Read-only: it runs beside a live server and never migrates or repairs. See docs/concurrency.md."""
    with Store.open(ctx.db, migrate=False) as store:
        report = check_store(store)
    if as_json:
        emit_json(report.to_json())
    else:
        for p in report.problems:
            click.echo(f"{p.kind:<12} {p.id}  {terminal_safe(p.message)}")
        counts = ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in report.counts.items())
        click.echo(f"checked {store.label}" + (f": {counts}" if counts else "") + ": " +
                   ("no problems" if report.ok else f"{len(report.problems)} problem(s)"))
    if not report.ok:
        click.get_current_context().exit(1)


def _summary(counts: dict[str, int]) -> str:
    return ", ".join(plural(counts[k], k[:-1]) for k in ("trees", "nodes", "ratings"))


@cli.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@pass_ctx
def backup(ctx: Context, file: Path, force: bool) -> None:
    """Write a consistent copy of the whole database to FILE (a SQLite file), while it is in use.

    Works on SQLite (online backup) and PostgreSQL (one snapshot of every table); open the copy with --db FILE."""
    counts = backups.backup(ctx.store, file, overwrite=force)
    click.echo(f"backed up {_summary(counts)} to {file}")


@cli.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--replace", is_flag=True, help="Replace everything in a database that already holds trees.")
@pass_ctx
def restore(ctx: Context, file: Path, replace: bool) -> None:
    """Copy a backup FILE into the database, in one transaction (all or nothing)."""
    backups.check_backup(file)  # before the target is opened (and, if new, created)
    counts = backups.restore(ctx.store, file, replace=replace)
    click.echo(f"restored {_summary(counts)} from {file} into {ctx.store.label}")
