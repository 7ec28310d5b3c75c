"""The ``loomwork`` command. Each command is a thin call into the library; this package only parses arguments,
opens the store, prints results and turns LoomworkError into one line on stderr with a non-zero exit code."""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import click

from ..errors import InvalidInput, LoomworkError
from ..validate import terminal_safe
from ..store import Store


class _TerminalSafe:
    """Standard output with control characters escaped (validate.terminal_safe): model or imported text cannot
    drive the terminal it is shown on. Files written with -o get the exact text."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text) -> int:
        return self._stream.write(terminal_safe(text) if isinstance(text, str) else text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        stdout = sys.stdout
        sys.stdout = _TerminalSafe(stdout)
        try:
            return self._invoke(ctx)
        finally:
            sys.stdout = stdout

    def _invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except LoomworkError as exc:
            click.echo(f"error: {terminal_safe(str(exc))}", err=True)
            ctx.exit(exc.exit_code)
        except BrokenPipeError:  # `loomwork show TREE | head`: the reader has all it wanted
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(1)
        except OSError as exc:  # a file that cannot be read or written: the person's to fix, not a crash
            click.echo(f"error: {terminal_safe(str(exc))}", err=True)
            ctx.exit(1)
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


def styled(text: str, **style) -> None:
    """A line in loomwork's own styling (dim, bold, a colour): the text is made terminal-safe first, then styled
    and written past the wrapper that escapes control characters, which would print the styling as escapes."""
    out = getattr(sys.stdout, "_stream", sys.stdout)
    tty = bool(getattr(out, "isatty", lambda: False)())
    click.echo(click.style(terminal_safe(text), **style) if tty else terminal_safe(text), file=out)


def emit_json(data) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


def emit_rows(rows: list[dict], as_json: bool, empty: str, line) -> None:
    """A listing: JSON, or ``line(row)`` for each row, or ``empty`` when there are none."""
    if as_json:
        emit_json(rows)
    elif not rows:
        click.echo(empty)
    else:
        for r in rows:
            click.echo(line(r))


def read_stdin(what: str) -> str:
    """Standard input as UTF-8 text, or one clear error (not a traceback) when it is not."""
    from ..validate import MAX_TEXT

    if sys.stdin is None:
        raise InvalidInput(f"{what}: there is no standard input to read")
    stream = sys.stdin.buffer if hasattr(sys.stdin, "buffer") else None
    raw = stream.read(4 * MAX_TEXT + 4) if stream else sys.stdin.read(MAX_TEXT + 1).encode()
    if len(raw) > 4 * MAX_TEXT + 3:
        raise InvalidInput(f"{what} on standard input is over {MAX_TEXT:,} characters")
    try:
        return raw.decode("utf-8-sig")  # a byte-order mark is not part of the text
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{what} on standard input is not UTF-8 (byte {exc.start}: {raw[exc.start:exc.start + 1]!r})"
                           ) from None


def _placement(name: str, env: str, help_text: str):
    """An option that sets where torch models run (or in what dtype) for this process, checked at once."""

    def apply(_ctx, _param, value):
        if value is None:
            return None
        os.environ[env] = value
        if importlib.util.find_spec("torch") is not None:  # without torch no hf model loads anyway
            from ..engine.device import resolve

            try:
                resolve()
            except InvalidInput as exc:
                raise click.BadParameter(str(exc)) from None
        return value

    return click.option(name, callback=apply, expose_value=False, metavar=name[2:].upper(), help=help_text)


def placement_options(command):
    """--device and --dtype for a command whose models may be local torch models (docs/backends.md)."""
    command = _placement("--dtype", "LOOMWORK_DTYPE", "Weights' dtype for local hf models: auto (float32 on the CPU, "
                         "bfloat16 on CUDA), float32, bfloat16 or float16 (env LOOMWORK_DTYPE).")(command)
    return _placement("--device", "LOOMWORK_DEVICE", "Where local hf models run: auto (CUDA when torch sees it), cpu, "
                      "cuda or cuda:N (env LOOMWORK_DEVICE).")(command)


def write_output(path, text: str) -> None:
    """Write a command's output file exactly as given; a missing directory is one clear error."""
    from pathlib import Path

    path = Path(path)
    if path.is_dir():
        raise InvalidInput(f"{path} is a directory: name a file")
    if not path.parent.is_dir():
        raise InvalidInput(f"cannot write {path}: the directory {path.parent} does not exist")
    path.write_text(text, encoding="utf-8")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", envvar="LOOMWORK_DB", metavar="PATH|URL",
              help="Database: a SQLite file or a SQLAlchemy URL (default: the user data directory; env LOOMWORK_DB).")
@click.version_option(package_name="loomwork")
@click.pass_context
def cli(ctx: click.Context, db: str | None) -> None:
    """loomwork: grow, curate and measure trees of language-model continuations."""
    ctx.obj = Context(db)
    # Never let click strip escape sequences when output is piped: loomwork shows them, escaped, instead
    # (_TerminalSafe), so piped text says what the node holds.
    ctx.color = True
    ctx.call_on_close(lambda: ctx.obj._store and ctx.obj._store.close())


def main() -> None:
    cli(prog_name="loomwork")


from . import bits, graders, lens, maintenance, models, nodes, serve, steer, supervise, tune, users, view  # noqa: E402,F401  (registers the commands)

__all__ = ["cli", "main"]

