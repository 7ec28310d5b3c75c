"""Tuning commands: tune (a LoRA adapter within a KL budget; --resume), adapters list|show|export|delete."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click

from ..backends.registry import close_all
from ..tuning import adapters
from ..tuning.data import parse_heldout, read_rows, rows_from_tree
from . import Context, cli, emit_json, emit_rows, pass_ctx, placement_options
from .nodes import tree_id


def _f(x, digits=3) -> str:
    return "?" if x is None else f"{x:.{digits}f}"


def _show(kl_budget: float):
    """Progress on stderr: every step, what each evaluation costs, how long loading took."""
    def show(e: dict) -> None:
        kind = e["event"]
        if kind == "load":
            click.echo(f"loading {e['base']}…", err=True)
        elif kind == "loaded":
            click.echo(f"  loaded in {e['seconds']:.1f} s", err=True)
        elif kind == "resumed":
            click.echo(f"resuming after step {e['step']}", err=True)
        elif kind == "eval-start":
            click.echo(f"evaluating at step {e['step']}: KL on {e['prompts']} held-out prompts × {e['samples']} "
                       f"samples × {e['tokens']} tokens, and the held-out loss…", err=True)
        elif kind == "step":
            click.echo(f"step {e['step']}/{e['total']}  loss {e['loss']:.4f}  ({e['seconds']:.1f} s)", err=True)
        elif kind == "eval":
            click.echo(f"  KL {e['kl_bits']:.4f} ± {_f(e['kl_se'], 4)} bits/token (budget {kl_budget}), held-out loss "
                       f"{e['heldout_loss']:.4f} ({e['seconds']:.1f} s)", err=True)
    return show


@cli.command()
@click.argument("name")
@click.option("--base", default="gemma-3-270m", show_default=True,
              help="The base model: a name as `loomwork models` prints it (hf:gemma-3-270m or gemma-3-270m) or a "
                   "model directory.")
@click.option("--data", "data_file", type=click.Path(dir_okay=False), help="An export: sft or preference JSONL.")
@click.option("--tree", "tree_refs", multiple=True, help="Train on a tree's own export instead (sft: bookmarked and "
                                                          "+1-rated paths; dpo: choices and ratings); repeat for more.")
@click.option("--method", type=click.Choice(["sft", "dpo"]), default="sft", show_default=True,
              help="sft on the chosen paths, or dpo on the preference pairs (docs/tuning.md).")
@click.option("--kl-budget", type=float, help="Largest KL(tuned || base) allowed, bits per token (required).")
@click.option("--lora-r", type=int, default=8, show_default=True, help="LoRA rank (alpha is twice it).")
@click.option("--epochs", type=int, default=1, show_default=True, help="Passes over the training rows.")
@click.option("--lr", type=float, default=2e-4, show_default=True, help="Learning rate.")
@click.option("--batch-size", type=int, default=4, show_default=True, help="Rows per step.")
@click.option("--eval-every", type=int, default=5, show_default=True, help="Steps between KL and held-out evaluations.")
@click.option("--kl-prompts", type=int, default=4, show_default=True, help="Held-out prompts the KL is estimated on.")
@click.option("--kl-samples", type=int, default=4, show_default=True, help="Samples per prompt at each evaluation.")
@click.option("--kl-tokens", type=int, default=24, show_default=True, help="Tokens per sample at each evaluation.")
@click.option("--beta", type=float, default=0.1, show_default=True, help="DPO's beta.")
@click.option("--heldout", default="0.2", show_default=True,
              help="The share of prompts held out (rows of one prompt or one text stay together), or a JSONL file of "
                   "held-out rows (rows sharing a prompt or text with them are not trained on).")
@click.option("--max-length", type=int, default=512, show_default=True, help="Tokens per row (the prompt is cut "
                                                                            "from the left beyond it).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split, the order and the KL samples.")
@click.option("--resume", is_flag=True, help="Continue the interrupted or stopped run NAME from its last checkpoint, "
                                            "with its own data and settings.")
@click.option("--report/--no-report", default=True, show_default=True,
              help="At the end, compare tuned with base on the lens suites.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
@placement_options
def tune(ctx: Context, name, base, data_file, tree_refs, method, kl_budget, lora_r, epochs, lr, batch_size, eval_every,
         kl_prompts, kl_samples, kl_tokens, beta, heldout, max_length, seed, resume, report, as_json) -> None:
    """Train a LoRA adapter NAME on curated data within a KL budget of its base; it becomes model hf:BASE+NAME.

    Rows are split by prompt: held-out prompts and texts never appear in training. Every --eval-every steps the
    per-token KL(tuned || base) is estimated on held-out prompts; training stops when it exceeds --kl-budget and
    the last checkpoint within it is kept (docs/tuning.md). Ctrl-C keeps the last checkpoint; --resume goes on."""
    from ..tuning.train import TuneConfig, resume as run_resume, tune as run_tune

    adapters.check_name(name)
    show = _show(kl_budget)
    try:
        if resume:
            here = click.get_current_context()
            extra = [f"--{p.name.replace('_', '-')}" for p in here.command.params
                     if p.name not in ("name", "resume", "as_json", "report")
                     and here.get_parameter_source(p.name) == click.core.ParameterSource.COMMANDLINE]
            if extra:
                raise click.UsageError(f"--resume continues a run with its own data and settings, so "
                                       f"{', '.join(extra)} would be ignored: give only NAME (and --report/--no-report)")
            m = adapters.describe(name)
            if here.get_parameter_source("report") != click.core.ParameterSource.COMMANDLINE:
                report = (m.get("options") or {}).get("report", True)  # as the run was started
            show = _show(m["config"]["kl_budget"])
            record = run_resume(name, progress=show)
        else:
            if bool(data_file) == bool(tree_refs):
                raise click.UsageError("give --data FILE or --tree TREE (one of them)")
            if kl_budget is None:
                raise click.UsageError("--kl-budget is required: the largest KL(tuned || base) allowed, bits/token")
            share, held_rows = parse_heldout(heldout, method)
            if data_file:
                rows, source = read_rows(data_file, method), {"file": str(Path(data_file).resolve())}
            else:
                ids = [tree_id(ctx, t) for t in tree_refs]
                rows = [r for t in ids for r in rows_from_tree(ctx.store, t, method)]
                source = {"trees": ids, "database": ctx.store.label}
            if held_rows is not None:
                source["heldout_file"] = str(Path(heldout).resolve())
            cfg = TuneConfig(method=method, kl_budget=kl_budget, lora_r=lora_r, lora_alpha=2 * lora_r, epochs=epochs,
                             lr=lr, batch_size=batch_size, eval_every=eval_every, beta=beta, heldout=share, seed=seed,
                             max_length=max_length, kl_prompts=kl_prompts, kl_samples=kl_samples, kl_tokens=kl_tokens)
            record = run_tune(name, base, rows, cfg, progress=show, heldout_rows=held_rows, source=source,
                              options={"report": report})
    except KeyboardInterrupt:
        if not adapters.directory(name).exists():
            click.echo(f"interrupted before {name}'s first checkpoint: nothing was kept", err=True)
            sys.exit(130)
        m = adapters.meta(name)
        if as_json:
            emit_json({"adapter": {**m, "status": adapters.status(m)}})
        click.echo(f"interrupted: {name} keeps its checkpoint at step {m['step']} (KL {_f(m.get('kl_bits'))} bits/token), "
                   f"usable as hf:{m['base']}+{name}; go on with `loomwork tune {name} --resume`", err=True)
        sys.exit(130)
    out = {"adapter": record}
    if report and not record["status"].startswith("stopped by request"):
        from ..tuning.report import tuned_vs_base

        async def run():
            try:
                return await tuned_vs_base(name, seed=record["config"]["seed"],
                                           progress=lambda m: click.echo(m, err=True))
            finally:
                await close_all()

        out["report"] = asyncio.run(run())
    if as_json:
        emit_json(out)
        return
    budget = record["config"]["kl_budget"]
    over = record.get("stopped_at")
    status = (f"stopped at the KL budget (step {over['step']} spent {over['kl_bits']:.4f} > {budget}), kept step "
              f"{record['step']}" if over else f"{record['status']} at step {record['step']}")
    click.echo(f"{name}: {status}; KL(tuned || base) {_f(record['kl_bits'], 4)} ± "
               f"{_f(record['kl_se'], 4)} bits/token (budget {budget}); held-out loss {_f(record['heldout_loss_before'])}"
               f" -> {_f(record['heldout_loss'])} nats/token on {record['rows']['heldout']} held-out rows; model "
               f"hf:{record['base']}+{name}")
    if "report" in out:
        for suite, entry in out["report"]["suites"].items():
            for model, m in entry["summary"].items():
                click.echo(f"  {suite:<17} {model:<40} entropy {_f(m['entropy'], 2)}  top-1 {_f(m['top1'])}  "
                           f"distinct-2 {_f(m['distinct_2'])}  unique {_f(m['unique'])}")


@cli.group("adapters")
def adapters_group() -> None:
    """LoRA adapters made by `loomwork tune` (each is a model: hf:BASE+NAME)."""


@adapters_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def adapters_list(as_json: bool) -> None:
    """The adapters, runs in progress included, with the KL each spent of its budget."""
    emit_rows(adapters.list_adapters(), as_json, "no adapters (make one with `loomwork tune`)",
              lambda a: f"{'hf:' + a['base'] + '+' + a['name']:<40} {a['config']['method']:<4} step {a.get('step', 0):<5} KL "
                        f"{_f(a.get('kl_bits'), 4)} bits/token (budget {a['config']['kl_budget']})  {a['status']}")


@adapters_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="The whole record as JSON.")
def adapters_show(name: str, as_json: bool) -> None:
    """One adapter: status, KL spent, held-out loss, and what shaped it (data, base, seeds, libraries, command)."""
    m = {**adapters.describe(name), "directory": str(adapters.directory(name))}
    if as_json:
        emit_json(m)
        return
    cfg, prov = m["config"], m.get("provenance") or {}
    click.echo(f"hf:{m['base']}+{m['name']}  {m['status']}  ({m['directory']})")
    click.echo(f"  {cfg['method']}, KL budget {cfg['kl_budget']} bits/token; at step {m.get('step', '?')}: KL "
               f"{_f(m.get('kl_bits'), 4)} ± {_f(m.get('kl_se'), 4)}, held-out loss {_f(m.get('heldout_loss_before'))} "
               f"-> {_f(m.get('heldout_loss'))} nats/token")
    if not prov:
        click.echo("  provenance: not recorded (made before loomwork recorded it)")
        return
    d, b = prov["data"], prov["base_model"]
    click.echo(f"  data: {json.dumps(d['source'])}; {d['rows']} rows, sha256 {d['sha256']}")
    click.echo(f"    train {d['train']['rows']} rows on {d['train']['prompts']} prompts (sha256 {d['train']['sha256']})")
    click.echo(f"    held out {d['heldout']['rows']} rows on {len(d['heldout']['prompts'])} prompts ({d['heldout']['how']}; "
               f"sha256 {d['heldout']['sha256']})" + (f"; {d['dropped_for_sharing_with_heldout']} rows dropped for "
                                                       "sharing a prompt or text with them"
                                                       if d.get("dropped_for_sharing_with_heldout") else ""))
    for p in d["heldout"]["prompts"][:5]:
        click.echo(f"      {p[:100]!r}")
    where = f"{b['package']} {b['version']} ({b['file']})" if b.get("package") else b.get("path")
    click.echo(f"  base: {b['name']} = {where}, sha256 {b['sha256']}" + (f"; upstream {b['upstream']}"
                                                                         if b.get("upstream") else ""))
    click.echo(f"  seed {prov['seed']}; {', '.join(f'{k} {v}' for k, v in prov['libraries'].items())}")
    click.echo(f"  command: {prov['command']}")


@adapters_group.command("export")
@click.argument("name")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--merged", is_flag=True, help="A full transformers model (base + adapter merged), not a PEFT folder.")
def adapters_export(name: str, directory: str, merged: bool) -> None:
    """Write adapter NAME to the new folder DIRECTORY: a PEFT adapter naming its base by its public identity (or,
    with --merged, a whole model that AutoModelForCausalLM.from_pretrained loads), with its record and a README."""
    from ..tuning.export import export

    out = export(name, directory, merged)
    click.echo(f"wrote {out} ({'a merged model' if merged else 'a PEFT adapter'}; see its README.md)")


@adapters_group.command("stop")
@click.argument("name")
def adapters_stop(name: str) -> None:
    """Ask a run in progress to stop after its current step (it keeps its last checkpoint; --resume goes on)."""
    from ..tuning.jobs import request_stop

    request_stop(name)
    click.echo(f"asked {name} to stop after its current step")


@adapters_group.command("delete")
@click.argument("name")
def adapters_delete(name: str) -> None:
    """Delete an adapter (nodes it generated keep its name as their model)."""
    adapters.delete(name)
    click.echo(f"deleted {name}")
