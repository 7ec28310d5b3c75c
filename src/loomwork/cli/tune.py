"""Tuning commands: tune (a LoRA adapter within a KL budget), adapters list|show|delete."""

from __future__ import annotations

import asyncio
import json
import sys

import click

from ..backends.registry import close_all
from ..tuning import adapters
from ..tuning.data import read_rows, rows_from_tree
from . import Context, cli, emit_json, emit_rows, pass_ctx
from .nodes import tree_id


def _f(x, digits=3) -> str:
    return "?" if x is None else f"{x:.{digits}f}"


@cli.command()
@click.argument("name")
@click.option("--base", default="gemma-3-270m", show_default=True, help="The base model (an hf model name or directory).")
@click.option("--data", "data_file", type=click.Path(dir_okay=False), help="An export: sft or preference JSONL.")
@click.option("--tree", "tree_ref", help="Train on a tree's own export instead (sft: bookmarked and +1-rated paths; "
                                         "dpo: choices and ratings).")
@click.option("--method", type=click.Choice(["sft", "dpo"]), default="sft", show_default=True)
@click.option("--kl-budget", type=float, required=True, help="Largest KL(tuned || base) allowed, bits per token.")
@click.option("--lora-r", type=int, default=8, show_default=True)
@click.option("--epochs", type=int, default=1, show_default=True)
@click.option("--lr", type=float, default=2e-4, show_default=True)
@click.option("--batch-size", type=int, default=4, show_default=True)
@click.option("--eval-every", type=int, default=5, show_default=True, help="Steps between KL and held-out evaluations.")
@click.option("--beta", type=float, default=0.1, show_default=True, help="DPO's beta.")
@click.option("--heldout", type=float, default=0.2, show_default=True, help="Fraction of rows held out.")
@click.option("--max-length", type=int, default=512, show_default=True, help="Tokens per row (the prompt is cut "
                                                                            "from the left beyond it).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--report/--no-report", default=True, show_default=True,
              help="At the end, compare tuned with base on the lens suites.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def tune(ctx: Context, name, base, data_file, tree_ref, method, kl_budget, lora_r, epochs, lr, batch_size, eval_every,
         beta, heldout, max_length, seed, report, as_json) -> None:
    """Train a LoRA adapter NAME on curated data within a KL budget of its base; it becomes model hf:BASE+NAME.

    Every --eval-every steps the per-token KL(tuned || base) is estimated on held-out prompts; training stops when
    it exceeds --kl-budget and the last checkpoint within it is kept (docs/tuning.md)."""
    from ..tuning.train import TuneConfig, tune as run_tune

    adapters.check_name(name)
    if bool(data_file) == bool(tree_ref):
        raise click.UsageError("give --data FILE or --tree TREE (one of them)")
    rows = read_rows(data_file, method) if data_file else rows_from_tree(ctx.store, tree_id(ctx, tree_ref), method)
    cfg = TuneConfig(method=method, kl_budget=kl_budget, lora_r=lora_r, lora_alpha=2 * lora_r, epochs=epochs, lr=lr,
                     batch_size=batch_size, eval_every=eval_every, beta=beta, heldout=heldout, seed=seed,
                     max_length=max_length)

    def show(e: dict) -> None:
        if e["event"] == "step":
            click.echo(f"step {e['step']}/{e['total']}  loss {e['loss']:.4f}", err=True)
        elif e["event"] == "eval":
            click.echo(f"  eval at step {e['step']}: KL {e['kl_bits']:.4f} ± {e['kl_se']:.4f} bits/token "
                       f"(budget {kl_budget}), held-out loss {e['heldout_loss']:.4f}", err=True)

    try:
        record = run_tune(name, base, rows, cfg, progress=show)
    except KeyboardInterrupt:
        m = adapters.meta(name)
        click.echo(f"interrupted: {name} keeps its checkpoint at step {m['step']} (KL {_f(m.get('kl_bits'))} bits/token), "
                   f"usable as hf:{base}+{name}", err=True)
        sys.exit(130)
    out = {"adapter": record}
    if report:
        from ..tuning.report import tuned_vs_base

        async def run():
            try:
                return await tuned_vs_base(name, seed=seed, progress=lambda m: click.echo(m, err=True))
            finally:
                await close_all()

        out["report"] = asyncio.run(run())
    if as_json:
        emit_json(out)
        return
    click.echo(f"{name}: {record['status']} at step {record['step']}; KL(tuned || base) {_f(record['kl_bits'], 4)} ± "
               f"{_f(record['kl_se'], 4)} bits/token (budget {kl_budget}); held-out loss {_f(record['heldout_loss_before'])}"
               f" -> {_f(record['heldout_loss'])} nats/token; model hf:{base}+{name}")
    if report:
        for suite, entry in out["report"]["suites"].items():
            for model, m in entry["summary"].items():
                click.echo(f"  {suite:<17} {model:<40} entropy {_f(m['entropy'], 2)}  top-1 {_f(m['top1'])}  "
                           f"distinct-2 {_f(m['distinct_2'])}  unique {_f(m['unique'])}")


@cli.group("adapters")
def adapters_group() -> None:
    """LoRA adapters made by `loomwork tune` (each is a model: hf:BASE+NAME)."""


@adapters_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def adapters_list(as_json: bool) -> None:
    """The adapters, with the KL each spent of its budget."""
    emit_rows(adapters.list_adapters(), as_json, "no adapters (make one with `loomwork tune`)",
              lambda a: f"hf:{a['base']}+{a['name']:<20} {a['config']['method']:<4} step {a.get('step', 0):<5} KL "
                        f"{_f(a.get('kl_bits'), 4)} bits/token (budget {a['config']['kl_budget']})  {a['status']}")


@adapters_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="(the record is always JSON)")
def adapters_show(name: str, as_json: bool) -> None:
    """One adapter's record: base, training settings, KL spent, held-out loss, curve, checkpoint, status."""
    m = adapters.meta(name)
    click.echo(json.dumps({**m, "status": adapters.status(m), "directory": str(adapters.directory(name))}, indent=1))


@adapters_group.command("delete")
@click.argument("name")
def adapters_delete(name: str) -> None:
    """Delete an adapter (nodes it generated keep its name as their model)."""
    adapters.delete(name)
    click.echo(f"deleted {name}")
