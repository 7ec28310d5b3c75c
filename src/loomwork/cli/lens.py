"""`loomwork compare` (the mode-collapse lens) and `loomwork logit-lens` (what each layer predicted) on the command
line."""

from __future__ import annotations

import asyncio
import json
import math
import re
from pathlib import Path

import click

from ..backends import get_backend
from ..errors import InvalidInput
from ..backends.registry import close_all
from ..lens import suite as suites
from ..lens.report import run_suite
from ..progress import interactive
from . import Context, cli, emit_json, pass_ctx, placement_options
from .nodes import node_id


@cli.command()
@click.option("-m", "--model", "models", multiple=True, required=True, help="A model to compare (repeat).")
@click.option("--suite", "suite_ref", default="random-numbers", show_default=True,
              help=f"A built-in suite ({', '.join(suites.builtin_names())}) or a JSON/YAML file.")
@click.option("--samples", type=int, default=16, show_default=True, help="Samples per prompt for free generations.")
@click.option("--max-tokens", type=int, help="Override each generation's max_tokens.")
@click.option("--seed", type=int, help="Sampling seed (recorded in the report).")
@click.option("--keep", "keep_regex", help="Quality filter: diversity again over samples matching this regex.")
@click.option("--no-embeddings", is_flag=True, help="Skip embedding diversity (no embedding model needed).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Write report.json and plots here.")
@placement_options
def compare(models, suite_ref, samples, max_tokens, seed, keep_regex, no_embeddings, out) -> None:
    """Compare models' output distributions on a probe suite: exact answer distributions (entropy, top-1, mass
    on the answer set, KL and JS between models) and diversity of free generations."""
    suite = suites.load(suite_ref)
    keep = re.compile(keep_regex).search if keep_regex else None
    say = (lambda m: click.echo(m, err=True)) if interactive() else (lambda _m: None)

    async def run():
        try:
            backends = [get_backend(m) for m in models]
            return await run_suite(backends, suite, samples, seed, max_tokens, not no_embeddings,
                                   (lambda t: bool(keep(t))) if keep else None, say)
        finally:
            await close_all()

    report = asyncio.run(run())
    f = lambda x: "—" if x is None else f"{x:.3f}"  # noqa: E731
    for p in report["probes"]:
        click.echo(f"\n{p['id']}: {p['prompt']!r}")
        click.echo(f"  {'model':<30}{'top-1':>8}{'p(top-1)':>10}{'H bits':>8}{'H/Hmax':>8}{'mass':>8}")
        for r in p["results"]:
            click.echo(f"  {r['model']:<30}{r['top1'].strip():>8}{r['top1_prob']:>10.3f}{r['entropy_bits']:>8.2f}"
                       f"{f(r['entropy_relative']):>8}{r['mass_on_set']:>8.3f}")
        for c in p["between_models"]:
            click.echo(f"  KL({c['models'][0]} || {c['models'][1]}) = {f(c['kl_ab_bits'])} bits, "
                       f"JS = {f(c['js_bits'])} bits")
    for g in report["generations"]:
        click.echo(f"\n{g['id']}: {g['prompt']!r}")
        for r in g["results"]:
            click.echo(f"  {r['model']:<30} unique {f(r['unique_fraction'])}  distinct-2 {f(r['distinct_2'])}  "
                       f"EAD-1 {f(r['ead_1'])}  embedding {f(r['embedding_diversity'])}")
    for note in report["notes"]:
        click.echo(f"note: {note}", err=True)
    if out:
        from ..lens.plots import write_plots

        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
        plots = write_plots(report, out)
        click.echo(f"\nwrote {out / 'report.json'} and {len(plots)} plots", err=True)


@cli.command()
@click.option("-m", "--model", required=True, help="The model whose samples are measured.")
@click.option("-r", "--reference", required=True, help="The reference model (same tokenizer).")
@click.option("--suite", "suite_ref", default="creative-writing", show_default=True,
              help="Prompts come from the suite's generations.")
@click.option("--samples", type=int, default=8, show_default=True, help="Samples per prompt (the report counts "
              "them over all the suite's prompts).")
@click.option("--max-tokens", type=int, default=32, show_default=True, help="Tokens per sample.")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampling seed (0 unless given, so runs repeat).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@placement_options
def kl(model, reference, suite_ref, samples, max_tokens, seed, as_json) -> None:
    """Per-token KL(model || reference) on texts sampled from the model, with its standard error."""
    from ..lens.kl import per_token_kl

    suite = suites.load(suite_ref)
    prompts = [g.prompt for g in suite.generations] or [p.prompt for p in suite.probes]

    async def run():
        try:
            return await per_token_kl(get_backend(model), get_backend(reference), prompts, samples, max_tokens, seed)
        finally:
            await close_all()

    r = asyncio.run(run())
    if as_json:
        click.echo(json.dumps(r, indent=1))
    else:
        se = r["standard_error_bits"]
        click.echo(f"KL({r['model']} || {r['reference']}) = {r['kl_per_token_bits']:.4f}"
                   + (f" ± {se:.4f}" if se is not None else " (one sample: no standard error)")
                   + f" bits per token ({r['samples']} samples over {len(prompts)} prompts, {r['tokens']} tokens)")


@cli.command("logit-lens")
@click.argument("node")
@click.option("--token", "token", type=int, help="Which of the node's tokens (0-based; default: its least likely).")
@click.option("-k", "k", type=int, default=5, show_default=True, help="Predictions shown per block.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (docs/lens.md, 'Logit lens').")
@pass_ctx
@placement_options
def logit_lens(ctx: Context, node: str, token: int | None, k: int, as_json: bool) -> None:
    """What each layer of the model that wrote NODE predicted at one of its tokens (the logit lens), and from which
    layer on the token it wrote was the top prediction; a steered node's beside the unsteered model's."""
    from ..lens.logit_lens import node_lens

    ident = node_id(ctx, node)
    written = ctx.store.node(ident)
    gen = ctx.store.generation(written.generation_id) if written.generation_id else None
    if gen is None:
        raise InvalidInput(f"node {ident} is {written.origin} text: the logit lens reads tokens a model generated")

    async def run():
        try:
            return await node_lens(ctx.store, ident, get_backend(f"{gen.backend}:{gen.model}"), token, k)
        finally:
            await close_all()

    out = asyncio.run(run())
    if as_json:
        emit_json(out)
        return
    click.echo(f"node {out['node']} token {out['index']} {out['text']!r} ({out['model']})")
    readings = [("", out["lens"])] + ([("steered", out["steered"])] if "steered" in out else [])
    for label, lens in readings:
        if label:
            click.echo("steered with " + ", ".join(f"{s['name']}×{s['coef']:g} at layer {s['layer']}" for s in out["steer"]))
        click.echo(f"{'layer':>5}  {'rank':>6}  {'p(token)':>8}  top predictions")
        for row in lens["layers"]:
            tops = "  ".join(f"{text!r} {math.exp(lp):.2f}" for text, lp in row["top"])
            click.echo(f"{row['layer']:>5}  {row['rank']:>6}  {math.exp(row['logprob']):>8.3f}  {tops}")
        settled = lens["settled_at"]
        click.echo(f"the token is the top prediction from layer {settled} on" if settled is not None
                   else "the token is not the top prediction at the last layer (it was sampled, not the argmax)")
