"""Commands of the optimization accounting: choose, bits."""

from __future__ import annotations

import asyncio

import click

from .. import config, curation, ledger, tree_settings
from ..levers import NAMES as LEVERS
from ..backends import get_backend
from ..backends.registry import close_all
from . import Context, cli, emit_json, pass_ctx, placement_options
from .nodes import node_id


@cli.command()
@click.argument("node")
@click.option("--among", "candidates", multiple=True, metavar="ID",
              help="The candidates shown (default: the siblings from the same expansion).")
@click.option("--acceptable", multiple=True, metavar="ID",
              help="Candidates you judged acceptable before choosing (the chosen one included).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (see docs/cli.md).")
@pass_ctx
def choose(ctx: Context, node: str, candidates: tuple[str, ...], acceptable: tuple[str, ...], as_json: bool) -> None:
    """Record that you continue from NODE, chosen among its siblings (selection bits: log2 n/m)."""
    resolve = lambda ids: [node_id(ctx, i) for i in ids] or None  # noqa: E731
    c = curation.record_choice(ctx.store, node_id(ctx, node), resolve(candidates), resolve(acceptable))
    out = curation.choice_summary(ctx.store.node(c.chosen_id), c)
    if as_json:
        emit_json(out)
    else:
        click.echo(f"chose {c.chosen_id} among {len(c.candidates)}: {out['bits']:.3f} bits of selection"
                   + (f" ({out['note']})" if out.get("note") else ""))


def _fmt(x) -> str:
    return "?" if x is None else f"{x:.2f}"


@cli.command()
@click.argument("ref")
@click.option("-m", "--model", help="Reference model for intervention bits (default: the tree's reference model "
                                   "setting, else its base model, else the default model).")
@click.option("--no-score", is_flag=True, help="Skip intervention bits (no model needed).")
@click.option("--model-kl", is_flag=True, help="Compute the model lever for nodes another model generated "
                                               "(two passes per node; both models local, one tokenizer).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (see docs/metrics.md).")
@pass_ctx
@placement_options
def bits(ctx: Context, ref: str, model: str | None, no_score: bool, model_kl: bool, as_json: bool) -> None:
    """The optimization ledger: bits of pressure per lever, per node and summed along the path to NODE, or for a
    whole TREE.

    selection: log2(n/m) of recorded choices (`loomwork choose`); writing: -log2 p of the text you wrote or changed
    under a reference model; decoding: KL of the sampling settings from the model; steering: KL of steered from
    unsteered; model: KL of another generating model from the reference (--model-kl). See docs/metrics.md."""
    kind, ident = ctx.store.resolve(ref)
    tree_id = ident if kind == "tree" else ctx.store.node(ident).tree_id
    model = model or tree_settings.reference_model(ctx.store, tree_id, config.default_model())
    backend = None if no_score else get_backend(model)

    async def run():
        try:
            if kind == "tree":
                return await ledger.tree_report(ctx.store, ident, backend, model_kl)
            return await ledger.path_report(ctx.store, ident, backend and backend.ref, backend,
                                              with_model_kl=model_kl)
        finally:
            await close_all()

    report = asyncio.run(run())
    if as_json:
        emit_json(report)
        return
    totals = report.get("path") or report["tree_totals"]
    head = "".join(f"{name:>11}" for name in LEVERS)
    if kind == "node":
        click.echo(f"{'node':<12}{'origin':<8}{head}{'tokens':>8}")
        for r in report["nodes"]:
            cells = "".join(f"{_fmt(r['ledger'][name]):>11}" for name in LEVERS)
            click.echo(f"{r['id']:<12}{r['origin']:<8}{cells}{r['model_tokens']:>8}")
            for lever, note in (r.get("notes") or {}).items():
                click.echo(f"{'':<20}{lever}: {note}")
    scope = "path" if kind == "node" else "tree"
    levers = " + ".join(f"{_fmt(totals['ledger'][name])} {name}" for name in LEVERS)
    total = _fmt(totals["total_bits"])
    if totals["incomplete"] and totals["total_bits"] is not None:
        total = f">= {total} (unknown: {', '.join(totals['incomplete'])})"
    click.echo(f"{scope}: {levers} = {total} bits over {totals['model_tokens']} model tokens "
               f"({_fmt(totals['bits_per_token'])} bits/token, {_fmt(totals['tokens_per_bit'])} tokens/bit); "
               f"selection as best-of-n KL <= {_fmt(totals['selection_kl_bits'])} bits"
               + (f"; reference model {report['model']}" if report["model"] else ""))
