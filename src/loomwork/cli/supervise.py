"""Process supervision commands: queue, audit, rate, outcome, critique, ratings."""

from __future__ import annotations

import asyncio
import json

import click

from ..backends import get_backend
from ..backends.registry import close_all
from ..supervision import critiques, queues, ratings, summary
from . import Context, cli, styled, emit_json, pass_ctx
from .nodes import node_id, tree_id


@cli.group()
def queue() -> None:
    """Audit queues: which steps to audit, and the questions to ask of each."""


@queue.command("create")
@click.argument("name")
@click.option("--tree", "tree_ref", help="Audit steps of this tree (a tree id or any node in it).")
@click.option("--subtree", help="Audit only the steps below this node.")
@click.option("--tag", help="Only steps with this tag.")
@click.option("--origin", type=click.Choice(["prompt", "human", "model", "edit"]), help="Only steps of this origin.")
@click.option("--min-depth", type=int, help="Only steps at least this deep (the root's children are depth 1).")
@click.option("--max-depth", type=int, help="Only steps at most this deep.")
@click.option("-q", "--question", "questions", multiple=True, help="A question to ask (repeat; default: three).")
@click.option("--unblinded", is_flag=True, help="Show raters what came after each step (blinded by default).")
@click.option("--critiques", type=click.Choice(queues.CRITIQUE_MODES), default="off", show_default=True,
              help="Show a model-written critique beside every step, none, or a random half (recorded).")
@click.option("--critic", help="The critic model (default: the default model).")
@click.option("--seed", type=int, help="Seed of the random item order (recorded).")
@click.option("--overlap", type=int, metavar="K", help="Give each step to K of the queue's raters (placed with "
              "`loomwork user grant NAME QUEUE rater --queue`), not to all of them.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def queue_create(ctx: Context, name, tree_ref, subtree, tag, origin, min_depth, max_depth, questions, unblinded,
                 critiques, critic, seed, overlap, as_json) -> None:
    """Create a queue of steps to audit, drawn from a tree (or a subtree) through optional filters."""
    q = queues.create_queue(ctx.store, name, tree=tree_id(ctx, tree_ref) if tree_ref else None,
                            subtree=node_id(ctx, subtree) if subtree else None, tag=tag, origin=origin,
                            min_depth=min_depth, max_depth=max_depth, questions=list(questions) or None,
                            blinded=not unblinded, critiques=critiques, critic=critic, seed=seed, overlap=overlap)
    n = len(queues.items(ctx.store, q))
    emit_json({**q, "items": n, "created_at": q["created_at"].isoformat()}) if as_json else \
        click.echo(f"queue {q['name']} ({q['id']}): {n} steps, {len(q['questions'])} questions")


@queue.command("list")
@pass_ctx
def queue_list(ctx: Context) -> None:
    """List the audit queues."""
    for q in queues.list_queues(ctx.store):
        blind = "blinded" if q["blinded"] else "unblinded"
        click.echo(f"{q['id']}  {q['name']:<24} {len(queues.items(ctx.store, q)):>5} steps  {blind}, critiques {q['critiques']}")


def _show(view: dict) -> None:
    styled("── context " + "─" * 40, dim=True)
    styled("".join(c["text"] for c in view["context"]), dim=True)
    styled("── step " + "─" * 43, bold=True)
    click.echo(view["step"]["text"])
    if view.get("critique") and view["critique"].get("text"):
        styled("── critique (" + view["critique"]["model"] + ")", fg="yellow")
        click.echo(view["critique"]["text"])


@cli.command()
@click.argument("queue_ref")
@click.option("--rater", required=True, help="Your name, recorded with every rating.")
@pass_ctx
def audit(ctx: Context, queue_ref: str, rater: str) -> None:
    """Audit a queue in the terminal, one step at a time, seeing only its context (answer -1, 0 or 1; f-1, f0
    or f1 to answer and flag it as unsure; s = skip, q = quit)."""
    q = queues.get_queue(ctx.store, queue_ref)
    skipped: set[str] = set()
    while True:
        remaining = [i for i in queues.progress(ctx.store, q, rater)["remaining"] if i not in skipped]
        if not remaining:
            click.echo("queue done" if not skipped else "no more steps (some skipped)")
            return
        item = remaining[0]
        view = queues.audit_view(ctx.store, q, item, rater)
        if view["critique"] and view["critique"].get("pending"):
            backend = get_backend(q["critic"])
            asyncio.run(_critique(ctx, item, backend))
            view = queues.audit_view(ctx.store, q, item, rater)
        click.echo(f"\n[{view['progress']['done'] + 1}/{view['progress']['total']}] step {item}")
        _show(view)
        for question in q["questions"]:
            if question in view["my_ratings"]:
                continue
            answer = click.prompt(question, type=click.Choice(["-1", "0", "1", "f-1", "f0", "f1", "s", "q"]),
                                  show_choices=True)
            if answer == "q":
                return
            if answer == "s":
                skipped.add(item)
                break
            flagged = answer.startswith("f")
            crit = view["critique"]["id"] if view["critique"] and view["critique"].get("id") else None
            ratings.rate(ctx.store, item, rater, int(answer.lstrip("f")), question, flagged=flagged,
                         queue=q["id"], critique_id=crit)


async def _critique(ctx: Context, node: str, backend, template: str = critiques.DEFAULT_TEMPLATE) -> dict:
    try:
        return await critiques.critique(ctx.store, node, backend, template)
    finally:
        await close_all()


@cli.command(context_settings={"ignore_unknown_options": True})  # so that `rate NODE -1` reads -1 as the label
@click.argument("node")
@click.argument("label", type=int)
@click.option("--rater", required=True, help="Your name (with accounts, ratings are the account's own).")
@click.option("-q", "--question", default=ratings.DEFAULT_QUESTIONS[0], show_default=True, help="What the label answers.")
@click.option("--queue", "queue_ref", help="Rate as an item of this queue.")
@click.option("--note", help="A note kept with the label.")
@click.option("--flag", is_flag=True, help="Mark the rating as unsure.")
@click.option("--json", "as_json", is_flag=True, help="Print the rating record as JSON.")
@pass_ctx
def rate(ctx: Context, node: str, label: int, rater: str, question: str, queue_ref, note, flag, as_json) -> None:
    """Rate a step: -1 bad, 0 neutral, +1 good."""
    r = ratings.rate(ctx.store, node_id(ctx, node), rater, label, question, note=note, flagged=flag, queue=queue_ref)
    if as_json:
        emit_json(r)
    else:
        click.echo(f"rated {r['node_id']} {label:+d} by {rater}")


@cli.command()
@click.argument("node")
@click.argument("label")
@click.option("--rater", required=True, help="Your name.")
@click.option("--note", help="A note kept with the label.")
@pass_ctx
def outcome(ctx: Context, node: str, label: str, rater: str, note: str | None) -> None:
    """Label an outcome (e.g. a final answer: correct / incorrect), apart from the step ratings."""
    r = ratings.label_outcome(ctx.store, node_id(ctx, node), rater, label, note)
    click.echo(f"outcome of {r['node_id']}: {r['label']}")


@cli.command()
@click.argument("node")
@click.option("-m", "--model", help="Critic model (default: the default model).")
@click.option("--template", type=click.File("r"), help="A prompt template file with {context} and {step}.")
@pass_ctx
def critique(ctx: Context, node: str, model: str | None, template) -> None:
    """Ask a critic model for problems with a step; the critique is stored with its template."""
    text = template.read() if template else critiques.DEFAULT_TEMPLATE
    critiques.render(text, "", "")  # refuse a bad template before loading a model
    row = asyncio.run(_critique(ctx, node_id(ctx, node), get_backend(model), text))
    click.echo(row["text"])


@cli.group("ratings")
def ratings_group() -> None:
    """Rating statistics."""


@ratings_group.command("summary")
@click.argument("queue_ref")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def ratings_summary(ctx: Context, queue_ref: str, as_json: bool) -> None:
    """Counts, label distribution, agreement (pairwise, Cohen's kappa, Krippendorff's alpha) per question."""
    s = summary.queue_summary(ctx.store, queue_ref)
    if as_json:
        emit_json(s)
        return
    f = lambda x: "—" if x is None else f"{x:.3f}"  # noqa: E731
    for q in s["questions"]:
        click.echo(f"{q['question']}\n  {q['ratings']} ratings of {q['items']} steps by {len(q['raters'])} raters; "
                   f"labels {json.dumps(q['distribution'])}; flagged {q['flagged']}")
        click.echo(f"  pairwise agreement {f(q['pairwise_agreement'])}, Krippendorff's alpha (ordinal) "
                   f"{f(q['krippendorff_alpha_ordinal'])}")
        for p in q["pairs"]:
            click.echo(f"  {p['raters'][0]} × {p['raters'][1]}: {p['items']} shared, agreement {f(p['agreement'])}, "
                       f"kappa {f(p['kappa'])}")
