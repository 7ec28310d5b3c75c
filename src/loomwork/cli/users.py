"""`loomwork user …`: the accounts of a shared server and their roles (docs/teams.md)."""

from __future__ import annotations

import click

from .. import accounts
from ..store.access import QUEUE_ROLES, ROLES
from . import Context, cli, emit_json, emit_rows, pass_ctx
from .nodes import tree_id

_EXPIRES = click.option("--expires", "expires_days", type=float, metavar="DAYS",
                        help="The token stops working after this many days (default: never).")


@cli.group()
def user() -> None:
    """Accounts of a server started with --accounts: each has a token, stored only as a hash."""


@user.command("add")
@click.argument("name")
@click.option("--admin", is_flag=True, help="May see and change every tree and manage shared records.")
@_EXPIRES
@pass_ctx
def add(ctx: Context, name: str, admin: bool, expires_days: float | None) -> None:
    """Make an account and print its token (once: only its hash is kept)."""
    token = accounts.add(ctx.store, name, admin, expires_days)
    _print_token(name, token)


@user.command("token")
@click.argument("name")
@_EXPIRES
@pass_ctx
def token(ctx: Context, name: str, expires_days: float | None) -> None:
    """Give an account a new token (the old one stops working at once) and print it."""
    _print_token(name, accounts.rotate(ctx.store, name, expires_days))


def _print_token(name: str, token: str) -> None:
    click.echo(token)
    click.echo(f"(the token of {name}, shown only now: they sign in at http://HOST:PORT/login?token=… or send "
               "'Authorization: Bearer …')", err=True)


@user.command("revoke")
@click.argument("name")
@pass_ctx
def revoke(ctx: Context, name: str) -> None:
    """Stop an account's token from working (`user token NAME` gives it a new one)."""
    accounts.revoke(ctx.store, name)
    click.echo(f"revoked {name}")


@user.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def listing(ctx: Context, as_json: bool) -> None:
    """Every account: name, admin or not, active / revoked / expired."""
    rows = [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()}
            for r in accounts.listing(ctx.store)]
    emit_rows(rows, as_json, "no accounts (add one: loomwork user add NAME --admin)",
              lambda r: f"{r['name']:<24} {'admin' if r['admin'] else '     '}  {r['status']}"
                        + (f" (until {r['expires_at'][:16]})" if r["expires_at"] and r["status"] == "active" else ""))


@user.command("grant")
@click.argument("name")
@click.argument("target")
@click.argument("role", type=click.Choice([*ROLES, *QUEUE_ROLES, "none"]))
@click.option("--queue", "is_queue", is_flag=True, help="TARGET is an audit queue (roles: rater, reviewer).")
@click.option("--json", "as_json", is_flag=True, help="Print the roles as JSON.")
@pass_ctx
def grant(ctx: Context, name: str, target: str, role: str, is_queue: bool, as_json: bool) -> None:
    """Give NAME a ROLE on a tree (owner, editor, rater, viewer; NAME '*' is every account) or, with --queue, on
    an audit queue (rater, reviewer). ROLE 'none' takes the role away."""
    chosen = None if role == "none" else role
    if is_queue:
        roles = accounts.grant_queue(ctx.store, name, target, chosen)
    else:
        roles = accounts.grant(ctx.store, name, tree_id(ctx, target), chosen)
    if as_json:
        emit_json(roles)
    else:
        for r in roles:
            click.echo(f"{r['account']:<24} {r['role']}")
