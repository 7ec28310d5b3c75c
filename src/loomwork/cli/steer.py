"""Steering vector commands: steer create, list, show, delete."""

from __future__ import annotations

import asyncio

import click

from .. import config
from ..backends import get_backend
from ..backends.registry import close_all
from ..steering import pairs as pairs_mod
from ..steering import vectors
from . import Context, cli, emit_json, emit_rows, pass_ctx, placement_options


@cli.group()
def steer() -> None:
    """Steering vectors: directions in a model's residual stream, made from contrast pairs (docs/steering.md)."""


@steer.command("create")
@click.argument("name")
@click.option("-m", "--model", help="The hf: model to make it with (default: the default model).")
@click.option("--plus", "plus", multiple=True, help="A text on the side to steer towards (repeat, one per pair).")
@click.option("--minus", "minus", multiple=True, help="Its contrast, to steer away from (repeat, one per pair).")
@click.option("--pairs", "pairs_file", type=click.Path(dir_okay=False), help="A JSONL file of {\"plus\", \"minus\"}.")
@click.option("--layer", type=int, required=True, help="The decoder block whose output it is added to (from 0).")
@click.option("--method", type=click.Choice(vectors.METHODS), default=None,
              help="actadd (one pair), mean (the mean difference; the default for several pairs) or pca.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
@placement_options
def steer_create(ctx: Context, name, model, plus, minus, pairs_file, layer, method, as_json) -> None:
    """Make a steering vector NAME from contrast pairs at a layer of a model, and save it."""
    rows = pairs_mod.read_pairs(pairs_file) if pairs_file else None
    method = method or ("actadd" if len(plus) == 1 and not rows else "mean")
    backend = get_backend(model or config.default_model())

    async def run():
        try:
            return await vectors.create(ctx.store, backend, name, layer, method, plus, minus, rows)
        finally:
            await close_all()

    rec = asyncio.run(run())
    if as_json:
        emit_json(rec)
    else:
        click.echo(f"{rec['name']}: {rec['method']} of {len(rec['pairs'])} pair(s) at layer {rec['layer']} of "
                   f"{rec['model']}, norm {rec['norm']:.3f} ({rec['width']} numbers)")


@steer.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def steer_list(ctx: Context, as_json: bool) -> None:
    """The saved steering vectors."""
    emit_rows(vectors.list_vectors(ctx.store), as_json, "no steering vectors (make one with `loomwork steer create`)",
              lambda r: f"{r['name']:<24}{r['model']:<28}layer {r['layer']:<4}{r['method']:<8}norm {r['norm']:.3f}  "
                        f"{len(r['pairs'])} pair(s)")


@steer.command("show")
@click.argument("name")
@click.option("--vector", "with_vector", is_flag=True, help="Include the numbers.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def steer_show(ctx: Context, name: str, with_vector: bool, as_json: bool) -> None:
    """One steering vector: its model, layer, method, norm and pairs."""
    r = vectors.show(ctx.store, name, with_vector)
    if as_json:
        emit_json(r)
        return
    click.echo(f"{r['name']}: {r['method']} at layer {r['layer']} of {r['model']}, norm {r['norm']:.4f}, "
               f"{r['width']} numbers, made {r['created_at']}")
    for p in r["pairs"]:
        click.echo(f"  + {p['plus']!r}\n  - {p['minus']!r}")
    if with_vector:
        click.echo(" ".join(f"{x:.6g}" for x in r["vector"]))


@steer.command("export")
@click.argument("name")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def steer_export(ctx: Context, name: str, file: str, as_json: bool) -> None:
    """Write a steering vector as a llama.cpp control-vector GGUF, for llama-server --control-vector-scaled
    FILE:COEF (added at its block on every position, times COEF)."""
    from ..steering.export import export_gguf

    r = export_gguf(ctx.store, name, file)
    if as_json:
        emit_json(r)
        return
    click.echo(f"wrote {r['file']}: {r['name']} at block {r['layer']} of {r['model']} ({r['width']} numbers); "
               f"serve it with: llama-server -m MODEL.gguf --control-vector-scaled {r['file']}:COEF")


@steer.command("delete")
@click.argument("name")
@pass_ctx
def steer_delete(ctx: Context, name: str) -> None:
    """Delete a steering vector (generations that used it keep its name, layer and coefficient)."""
    vectors.delete(ctx.store, name)
    click.echo(f"deleted {name}")
