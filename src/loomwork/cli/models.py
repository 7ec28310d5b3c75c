"""Commands that use models: models, expand."""

from __future__ import annotations

import asyncio
import json

import click

from .. import config, expansion
from ..backends import SamplingParams, get_backend, list_models
from ..backends.registry import close_all, split_ref
from ..errors import InvalidInput
from ..progress import bar
from . import Context, cli, emit_json, pass_ctx, placement_options
from .nodes import node_id
from .render import node_line


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON (see docs/cli.md).")
@click.option("--stats", is_flag=True, help="The models a running server has loaded, and their prefix caches.")
@click.option("--server", default="http://127.0.0.1:8765", show_default=True, help="The server --stats asks.")
def models(as_json: bool, stats: bool, server: str) -> None:
    """List the models loomwork can use here, and whether each is installed."""
    if stats:
        return _stats(server, as_json)
    infos = list_models()
    if as_json:
        emit_json([m.to_json() for m in infos])
        return
    for m in infos:
        mark = "✓" if m.installed else "✗"
        note = f"  ({m.note})" if m.note else ""
        click.echo(f"{mark} {m.ref:<28} {m.description}{note}")


def _stats(server: str, as_json: bool) -> None:
    # The cache lives in the process that computes: a server's figures come from the server.
    import httpx

    try:
        resp = httpx.get(server.rstrip("/") + "/api/models/stats", timeout=10)
        resp.raise_for_status()
    except httpx.HTTPError as exc:
        raise click.ClickException(f"no loomwork server answered at {server} ({exc}); start one with "
                                   "`loomwork serve`, or name it with --server") from None
    rows = resp.json()
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo(f"{server} has loaded no model yet")
    for row in rows:
        c = row["cache"]
        if c is None:
            click.echo(f"{row['model']}: no prefix cache")
            continue
        mib = 1024 * 1024
        click.echo(f"{row['model']}: {c['entries']} entries, {c['tokens']:,} tokens, {c['bytes'] / mib:.1f} MiB "
                   f"(peak {c['peak_bytes'] / mib:.1f} of {c['budget_bytes'] / mib:.0f} MiB); {c['hits']} hits, "
                   f"{c['misses']} misses; {c['reused_tokens']:,} tokens reused, {c['computed_tokens']:,} computed")


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


@cli.command()
@click.argument("node")
@click.option("-n", "n", type=int, default=4, show_default=True, help="How many continuations (1-64).")
@click.option("-m", "--model", "models", multiple=True, help="backend:model (default: hf:gemma-3-270m; env "
              "LOOMWORK_MODEL). Repeat for several models at once: N samples from each, one seed for all.")
@click.option("--max-tokens", type=int, default=32, show_default=True, help="Tokens per continuation.")
@click.option("-t", "--temperature", type=float, help="Sampling temperature (default 1: the model as it is).")
@click.option("--seed", type=int, help="Fix the sampling seed (recorded either way).")
@click.option("-o", "options", type=(str, str), multiple=True, metavar="KEY VALUE",
              help="Any other sampling parameter: top_p, top_k, min_p, stop, logprobs.")
@click.option("--steer", "steer", multiple=True, metavar="NAME=COEF",
              help="Add a steering vector times COEF to the residual stream (repeat; `loomwork steer list`).")
@click.option("--steer-prompt", is_flag=True, help="Steer every position of the prompt too, not only the new tokens.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (see docs/cli.md).")
@pass_ctx
@placement_options
def expand(ctx: Context, node: str, n: int, models: tuple[str, ...], max_tokens: int, temperature: float | None,
           seed: int | None, options: tuple[tuple[str, str], ...], steer: tuple[str, ...], steer_prompt: bool,
           as_json: bool) -> None:
    """Sample N continuations of NODE's path (from each model given) and add them as its children."""
    given = {"n": n, "max_tokens": max_tokens, "temperature": temperature, "seed": seed,
             "steer": list(steer) or None, "steer_prompt": steer_prompt or None}
    given.update({k.replace("-", "_"): _value(v) for k, v in options})  # -o wins over the defaults above
    params = SamplingParams.make(**given)
    target = node_id(ctx, node)
    refs = list(models) or [config.default_model()]
    for ref in refs:
        if params.steer and split_ref(ref)[0] not in ("hf", "llama"):
            raise InvalidInput(f"{ref} cannot steer: steering vectors need a local hf: or llama: model")
    # no ref for the default: then an error about it names LOOMWORK_MODEL where that chose it
    backends = [get_backend(ref) for ref in models] if models else [get_backend()]

    async def run():
        progress = bar(len(backends) * params.n * params.max_tokens, ", ".join(b.ref for b in backends))
        try:
            if len(backends) == 1:
                return await expansion.expand(ctx.store, target, backends[0], params,
                                              on_token=lambda _e: progress.update(1))
            return await expansion.expand_with_models(ctx.store, target, backends, params,
                                                      on_token=lambda _k, _e: progress.update(1))
        finally:
            progress.close()
            await close_all()

    children = asyncio.run(run())
    if as_json:
        gens = [ctx.store.generation(g).to_json() for g in dict.fromkeys(c.generation_id for c in children)]
        one = {"generation": gens[0] if gens else None} if len(backends) == 1 else {"generations": gens}
        emit_json({**one, "children": [c.to_json() for c in children]})
        return
    for c in children:
        click.echo(node_line(c, width=100))
