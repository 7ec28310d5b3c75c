"""`loomwork serve`: the web loom."""

from __future__ import annotations

import secrets
import webbrowser

import click

from .. import config
from ..errors import BackendError
from . import Context, cli, pass_ctx


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback requires an access token (printed in the URL).")
@click.option("--port", default=8765, show_default=True, type=int)
@click.option("-m", "--model", help="Default model for generation (default: hf:gemma-3-270m; env LOOMWORK_MODEL).")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in a browser.")
@click.option("--token", "force_token", is_flag=True, help="Require an access token even on loopback.")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
              help="Also answer requests for this host name, on any port (e.g. behind a reverse proxy); '*' for "
                   "any. Repeatable. Off loopback the machine's own names and addresses are allowed already.")
@pass_ctx
def serve(ctx: Context, host: str, port: int, model: str | None, open_browser: bool, force_token: bool,
          allow_hosts: tuple[str, ...]) -> None:
    """Serve the web loom (a keyboard-driven browser interface) over the database."""
    try:
        import uvicorn

        from ..web import create_app
        from ..web.security import is_loopback
    except ImportError as exc:
        raise BackendError(f"the web interface needs the web extra ({exc.name} is missing): "
                           "pip install 'loomwork[web]'") from None
    # a name other than loopback in Host means other machines: they must have the token
    token = secrets.token_urlsafe(24) if force_token or not is_loopback(host) or allow_hosts else None
    app = create_app(ctx.store, host=host, port=port, token=token, default_model=model or config.default_model(),
                     allow_hosts=allow_hosts)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    click.echo(f"loomwork is serving {ctx.store.label}\n  open {url}\n  (Ctrl+C stops it)")
    if open_browser:
        webbrowser.open(url)
    uvicorn.run(app, host=host, port=port, log_level="warning")
