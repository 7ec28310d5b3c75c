"""Grader commands: grader create|list|show|delete, bon (best-of-n), grow (autoloom), goodhart (the curve)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from ..backends import SamplingParams, get_backend
from ..backends.registry import close_all
from ..errors import InvalidInput
from ..graders import bon as bon_mod
from ..graders import goodhart as goodhart_mod
from ..graders import grow as grow_mod
from ..graders import registry
from ..progress import Phases, interactive
from . import Context, cli, emit_json, emit_rows, pass_ctx, placement_options
from .render import plural
from .nodes import node_id, tree_id


@cli.group()
def grader() -> None:
    """Graders: a judge prompt, a Python callable or people's ratings, scoring a node in its context."""


@grader.command("create")
@click.argument("name")
@click.option("--judge", "judge_model", metavar="MODEL", help="A judge: this model scores log P(yes) - log P(no).")
@click.option("--template", help="The judge's prompt, with {text} (and optionally {context}).")
@click.option("--callable", "target", metavar="MODULE:FUNCTION", help="A rule: function(text, context) -> number.")
@click.option("--person", is_flag=True, help="People's audit ratings (their mean on --question).")
@click.option("--question", help="With --person: the audit question.")
@click.option("--reward-from", "reward_tree", metavar="TREE", help="A reward model trained on this tree's "
                                                                   "preference export.")
@click.option("--reward-data", type=click.Path(dir_okay=False), help="A reward model trained on a preference JSONL.")
@click.option("--reward-base", default="smollm2-135m-instruct", show_default=True,
              help="The small model the reward model starts from.")
@click.option("--epochs", type=int, default=1, show_default=True, help="Reward model training epochs.")
@click.option("--heldout", default="0.2", show_default=True,
              help="Reward models: the share of prompts held out to measure accuracy on, or a JSONL file of held-out "
                   "preference rows.")
@click.option("--seed", type=int, default=0, show_default=True, help="Reward models: the seed of training and split.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
@placement_options
def grader_create(ctx: Context, name, judge_model, template, target, person, question, reward_tree, reward_data,
                  reward_base, epochs, heldout, seed, as_json) -> None:
    """Make a grader NAME (one of --judge, --callable, --person, --reward-from, --reward-data)."""
    kinds = [k for k, on in (("judge", judge_model), ("callable", target), ("person", person),
                             ("reward", reward_tree or reward_data)) if on]
    if len(kinds) != 1 or (reward_tree and reward_data):
        raise click.UsageError("give exactly one of --judge MODEL, --callable MODULE:FUNCTION, --person, "
                               "--reward-from TREE, --reward-data FILE")
    if kinds[0] == "reward":
        from ..tuning.data import parse_heldout, read_rows, rows_from_tree

        if reward_data:
            rows, source = read_rows(reward_data, "dpo"), {"file": str(Path(reward_data).resolve())}
        else:
            tid = tree_id(ctx, reward_tree)
            rows, source = rows_from_tree(ctx.store, tid, "dpo"), {"trees": [tid], "database": ctx.store.label}
        share, held_rows = parse_heldout(heldout, "dpo")
        say = (lambda m: click.echo(m, err=True)) if interactive() else (lambda _m: None)
        g = registry.create_reward(ctx.store, name, reward_base, rows, epochs=epochs, heldout=share,
                                   heldout_rows=held_rows, source=source, seed=seed, progress=say)
    else:
        g = registry.create(ctx.store, name, kinds[0], model=judge_model, template=template, target=target,
                            question=question)
    if as_json:
        emit_json(g)
        return
    cfg = g["config"]
    about = {"judge": lambda: f"model {cfg['model']}", "callable": lambda: cfg["target"],
             "person": lambda: f"question {cfg['question']!r}",
             "reward": lambda: (f"trained on {cfg['train_rows']} rows from {cfg['base']}; pairwise accuracy "
                                f"{cfg['train_accuracy']:.3f} on them, {cfg['heldout_accuracy']:.3f} on "
                                f"{cfg['heldout_rows']} held-out rows ({cfg['path']})")}[g["kind"]]
    click.echo(f"{g['name']}: {g['kind']}, {about()}")


@grader.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def grader_list(ctx: Context, as_json: bool) -> None:
    """The graders."""
    emit_rows(registry.list_graders(ctx.store), as_json, "no graders (make one with `loomwork grader create`)",
              lambda g: f"{g['name']:<20}{g['kind']:<10}"
                        f"{g['config'].get('model') or g['config'].get('target') or g['config'].get('question')}")


@grader.command("show")
@click.argument("name")
@pass_ctx
def grader_show(ctx: Context, name: str) -> None:
    """One grader: its kind and configuration (JSON)."""
    emit_json(registry.get(ctx.store, name))


@grader.command("delete")
@click.argument("name")
@pass_ctx
def grader_delete(ctx: Context, name: str) -> None:
    """Delete a grader (the choices it made stay recorded under its name)."""
    registry.delete(ctx.store, name)
    click.echo(f"deleted {name}")


@cli.command()
@click.argument("node")
@click.option("-n", "n", type=int, default=4, show_default=True, help="How many candidates to sample.")
@click.option("--grader", "grader_name", required=True, help="The grader that picks the best (`grader list`).")
@click.option("-m", "--model", help="The model that samples (default: the default model).")
@click.option("--max-tokens", type=int, default=32, show_default=True, help="Tokens per candidate.")
@click.option("--seed", type=int, help="Sampling seed (recorded either way).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
@placement_options
def bon(ctx: Context, node, n, grader_name, model, max_tokens, seed, as_json) -> None:
    """Best-of-n: sample N continuations of NODE, score them with a grader, keep all (tagged bon) and record the
    best as the grader's choice: on the ledger's grader line, the KL of best-of-N over the scores they got (ties
    included; at most log2 N bits)."""
    g = registry.get(ctx.store, grader_name)
    params = SamplingParams.make(n=n, max_tokens=max_tokens, seed=seed)
    target = node_id(ctx, node)
    backend = get_backend(model)

    async def run():
        try:
            return await bon_mod.best_of_n(ctx.store, target, backend, params, g)
        finally:
            await close_all()

    r = asyncio.run(run())
    if as_json:
        emit_json(r)
        return
    for c in r["candidates"]:
        mark = "*" if c["id"] == r["chosen"] else " "
        score = f"{c['score']:8.3f}" if c["score"] is not None else f"  failed: {c['error']}"
        click.echo(f"{mark} {c['id']} {score}  {c['text'][:70]!r}")
    if r["chosen"]:
        among = f"{r['scored']} scored of {r['n']}" if r["scored"] != r["n"] else str(r["n"])
        click.echo(f"{r['grader']} chose {r['chosen']} among {among}: {r['bits']:.3f} bits on the grader's line (KL "
                   f"of best-of-n over these scores, ties included; at most log2 n = {r['bound_bits']:.3f})")
    else:
        raise InvalidInput(r["error"])


def _ns(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InvalidInput(f"--n is a comma-separated list of whole numbers, not {text!r}") from None


@cli.command()
@click.argument("node")
@click.option("--proxy", required=True, help="The grader best-of-n optimizes.")
@click.option("--gold", required=True, help="The held-out grader it is judged by.")
@click.option("--sizes", "--n", "ns", default="1,2,4,8,16,32", show_default=True,
              help="Increasing values of n, the best-of-n sizes the curve is drawn at.")
@click.option("--pool", type=int, default=64, show_default=True, help="Samples drawn once (at least the largest n).")
@click.option("-m", "--model", help="The model that samples.")
@click.option("--max-tokens", type=int, default=32, show_default=True, help="Tokens per sample.")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampling seed (0 unless given, so runs repeat).")
@click.option("--out", type=click.Path(file_okay=False), default="goodhart", show_default=True,
              help="Directory for goodhart.json and goodhart.png.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
@placement_options
def goodhart(ctx: Context, node, proxy, gold, ns, pool, model, max_tokens, seed, out, as_json) -> None:
    """The Goodhart curve at NODE: best-of-n's expected proxy and gold scores against √KL, from one pool."""
    n_list = goodhart_mod.check_ns(_ns(ns), pool)
    p, g = registry.get(ctx.store, proxy), registry.get(ctx.store, gold)
    params = SamplingParams.make(n=1, max_tokens=max_tokens, seed=seed)
    target = node_id(ctx, node)
    backend = get_backend(model)

    bar = Phases("sample")

    async def run():
        try:
            return await goodhart_mod.run(ctx.store, target, backend, p, g, n_list, pool, params, progress=bar.update)
        finally:
            await close_all()

    report = asyncio.run(run())
    bar.close()
    goodhart_mod.write(report, Path(out))
    if as_json:
        emit_json(report)
        return
    click.echo(f"pool {report['pool']} samples of {report['model']} ({report['failed']} failed); proxy {proxy}, gold {gold}")
    def ci(pt: dict, field: str) -> str:
        lo_hi = pt.get(f"{field}_ci")
        return f"{pt[field]:7.3f} [{lo_hi[0]:7.3f}, {lo_hi[1]:7.3f}]" if lo_hi else f"{pt[field]:7.3f}"

    click.echo(f"{'n':<6}{'√KL (nats)':<28}{'proxy':<28}gold   (95% bootstrap intervals)")
    for pt in report["points"]:
        click.echo(f"{pt['n']:<6}{ci(pt, 'sqrt_kl'):<28}{ci(pt, 'proxy'):<28}{ci(pt, 'gold')}")
    f = report["fit"]
    if f.get("alpha") is not None:
        if f["peak_sqrt_kl"] is not None:
            n_at = f.get("peak_n_estimate")
            peak = f"peak at √KL {f['peak_sqrt_kl']:.3f}" + (f" (n ≈ {n_at:.1f})" if n_at else "")
        else:
            peak = "no peak"
        sign = "−" if f["beta"] >= 0 else "+"
        click.echo(f"gold − gold(n=1) ≈ d × ({f['alpha']:.3f} {sign} {abs(f['beta']):.3f} d): {peak}"
                   + (f"; α 95% interval [{f['alpha_ci'][0]:.3f}, {f['alpha_ci'][1]:.3f}], a peak in "
                      f"{100 * f['peak_share']:.0f}% of resampled pools" if f.get("alpha_ci") else ""))
    click.echo(f"wrote {out}/goodhart.json and goodhart.png")
    for note in report["notes"]:
        click.echo(f"note: {note}")


@cli.command()
@click.argument("node")
@click.option("--grader", "grader_name", required=True, help="The grader that chooses where to grow (`grader list`).")
@click.option("--nodes", "budget_nodes", type=int, help="Budget: stop after this many new nodes.")
@click.option("--tokens", "budget_tokens", type=int, help="Budget: stop after this many new tokens.")
@click.option("--beam", type=int, default=2, show_default=True, help="Frontier nodes expanded each round.")
@click.option("--branching", type=int, default=3, show_default=True, help="Children of each expanded node.")
@click.option("--strategy", type=click.Choice(grow_mod.STRATEGIES), default="beam", show_default=True,
              help="beam: the best-scored; tilted: drawn from softmax(score / temperature); weave: MiniHF's tree "
                   "search (lookahead with value back-up, a Gumbel beam of --beam nodes).")
@click.option("--temperature", type=float, default=1.0, show_default=True,
              help="For --strategy tilted and weave: scores are divided by it.")
@click.option("--lookahead", type=int,
              help="For --strategy weave: levels searched below the beam each round (default 3; 1: a plain Gumbel beam).")
@click.option("-m", "--model", help="The model that samples.")
@click.option("--max-tokens", type=int, default=32, show_default=True, help="Tokens per sample.")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampling seed (0 unless given, so runs repeat).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
@placement_options
def grow(ctx: Context, node, grader_name, budget_nodes, budget_tokens, beam, branching, strategy, temperature,
         lookahead, model, max_tokens, seed, as_json) -> None:
    """Grow the tree from NODE automatically, guided by a grader, within a budget; every choice is recorded as
    the grader's (Ctrl+C stops it; what it grew stays)."""
    if lookahead is not None and strategy != "weave":
        raise InvalidInput("--lookahead is for --strategy weave (the others look no further than the frontier)")
    lookahead = 3 if lookahead is None else lookahead
    g = registry.get(ctx.store, grader_name)
    grow_mod.check(budget_nodes, budget_tokens, beam, branching, strategy, temperature, lookahead)
    params = SamplingParams.make(max_tokens=max_tokens, seed=seed)
    target = node_id(ctx, node)
    backend = get_backend(model)

    def show(e: dict) -> None:
        if not as_json:
            best = ", ".join(f"{c['id'][:6]} {c['score']:.2f}" if c["score"] is not None else f"{c['id'][:6]} failed"
                             for c in e["children"])
            click.echo(f"round {e['round']}: {e['parent'][:6]} -> {best}  ({plural(e['nodes'], 'node')}, {plural(e['tokens'], 'token')})")

    async def run():
        try:
            return await grow_mod.grow(ctx.store, target, backend, g, params, budget_nodes=budget_nodes,
                                       budget_tokens=budget_tokens, beam=beam, branching=branching, strategy=strategy,
                                       temperature=temperature, seed=seed, lookahead=lookahead, on_event=show)
        finally:
            await close_all()

    r = asyncio.run(run())
    if as_json:
        emit_json(r)
    else:
        k = len(r["choices"])
        bound = sum(c["bound_bits"] for c in r["choices"])
        click.echo(f"grew {plural(r['nodes'], 'node')} ({plural(r['tokens'], 'token')}) in {plural(r['rounds'], 'round')}; {k} "
                   f"choice{'' if k == 1 else 's'} by {r['grader']}: {r['grader_bits']:.2f} bits on the grader's line "
                   f"(KL of its {r['strategy']} selections; at most {bound:.2f}); best "
                   f"{'leaf under the beam' if r['strategy'] == 'weave' else 'frontier node'} {r['best']}")
