"""The ``loomwork`` command. Each command is a thin call into the library; this package only parses arguments,
opens the store, prints results and turns LoomworkError into one line on stderr with a non-zero exit code."""

from __future__ import annotations

import json

import click

from ..errors import LoomworkError
from ..store import Store


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except LoomworkError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


class Context:
    def __init__(self, db: str | None):
        self.db = db
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store.open(self.db)
        return self._store


pass_ctx = click.make_pass_decorator(Context)


def emit_json(data) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", envvar="LOOMWORK_DB", metavar="PATH|URL",
              help="Database: a SQLite file or a SQLAlchemy URL (default: the user data directory; env LOOMWORK_DB).")
@click.version_option(package_name="loomwork")
@click.pass_context
def cli(ctx: click.Context, db: str | None) -> None:
    """loomwork: grow, curate and measure trees of language-model continuations."""
    ctx.obj = Context(db)
    ctx.call_on_close(lambda: ctx.obj._store and ctx.obj._store.close())


def main() -> None:
    cli(prog_name="loomwork")


from . import bits, lens, maintenance, models, nodes, serve, supervise, view  # noqa: E402,F401  (registers the commands)

__all__ = ["cli", "main"]

