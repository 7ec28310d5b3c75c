"""`loomwork serve`: the web loom."""

from __future__ import annotations

import secrets
import socket
import webbrowser

import click

from .. import accounts, config
from ..backends.registry import check_weights, split_ref
from ..errors import BackendError, InvalidInput
from . import Context, cli, pass_ctx, placement_options


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback has accounts (see --accounts).")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.option("-m", "--model", help="Default model for generation (default: hf:gemma-3-270m; env LOOMWORK_MODEL).")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in a browser.")
@click.option("--token", "force_token", is_flag=True, help="Require an access token even on loopback.")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
              help="Also answer requests for this host name, on any port (e.g. behind a reverse proxy); '*' for "
                   "any. Repeatable. Off loopback the machine's own names and addresses are allowed already.")
@click.option("--allow-model", "allow_models", multiple=True, metavar="REF",
              help="On a server with a token, another model people may use besides the packaged ones and the "
                   "default (e.g. openai:http://gpu-box:8000/v1#llama). Repeatable.")
@click.option("--accounts/--no-accounts", "use_accounts", default=None,
              help="Each person signs in with their own account's token (`loomwork user add`) and acts under its "
                   "roles. Default: on when --host is not loopback; --no-accounts there shares one token instead.")
@click.option("--rate-limit", default=30, show_default=True, type=click.IntRange(1, 100_000), metavar="N",
              help="With accounts: calls of model work (expand, grow, best-of-n, tune, compare, …) each account may "
                   "make a minute, in bursts of as many.")
@pass_ctx
@placement_options
def serve(ctx: Context, host: str, port: int, model: str | None, open_browser: bool, force_token: bool,
          allow_hosts: tuple[str, ...], allow_models: tuple[str, ...], use_accounts: bool | None,
          rate_limit: int) -> None:
    """Serve the web loom (a keyboard-driven browser interface) over the database."""
    try:
        import uvicorn

        from ..web import create_app
        from ..web.security import is_loopback, own_addresses
    except ImportError as exc:
        raise BackendError(f"the web interface needs the web extra ({exc.name} is missing): "
                           "pip install 'loomwork[web]'") from None
    model = model or config.default_model()
    for ref in (model, *allow_models):
        split_ref(ref)  # a bad reference now, in one line, not at the first request
    check_weights(model)  # and a default model whose weights are not there (`-m hf:gemma-3-27m`)
    _check_listen(host, port)
    use_accounts = not is_loopback(host) if use_accounts is None else use_accounts
    if use_accounts and not accounts.active_count(ctx.store):
        other = "" if is_loopback(host) else " (or serve on loopback, or pass --no-accounts)"
        raise InvalidInput(f"this server would have accounts, but {ctx.store.label} has none: make one first with "
                           f"`loomwork user add NAME --admin`{other}")
    # a name other than loopback in Host means other machines: they must have the token
    shared = not use_accounts and (force_token or not is_loopback(host) or bool(allow_hosts))
    token = secrets.token_urlsafe(24) if shared else None
    app = create_app(ctx.store, host=host, port=port, token=token, default_model=model, allow_hosts=allow_hosts,
                     allowed_models=set(allow_models) if token or use_accounts else None, accounts=use_accounts,
                     rate_limit=rate_limit)
    shown = own_addresses() + ["127.0.0.1"] if host in ("0.0.0.0", "::") else [host]
    tail = f"?token={token}" if token else "login?token=YOUR_TOKEN  (each person their own: loomwork user add NAME)" \
        if use_accounts else ""
    urls = "\n".join(f"  open http://{h}:{port}/{tail}" for h in shown)
    click.echo(f"loomwork is serving {ctx.store.label}\n{urls}\n  (Ctrl+C stops it)")
    if open_browser:
        webbrowser.open(f"http://{shown[-1]}:{port}/" + (f"?token={token}" if token else ""))
    uvicorn.run(app, host=host, port=port, log_level="warning")


def _check_listen(host: str, port: int) -> None:
    """Refuse, in one line, an address this machine cannot listen on, or a port another program holds."""
    try:
        host.encode("ascii")
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (UnicodeError, OSError) as exc:
        raise InvalidInput(f"cannot listen on {host!r}: {exc}") from None
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
