"""Commands that read: show, trees, export."""

from __future__ import annotations

import math

from pathlib import Path

import click

from ..formats import io as formats_io
from ..errors import InvalidInput
from ..formats.io import EXPORT_FORMATS, IMPORT_FORMATS
from ..supervision import prm800k
from ..supervision.formats import FORMATS as SUPERVISION_FORMATS
from ..supervision.exports import STEP_QUESTION
from ..supervision.formats import export_jsonl
from ..tree import path_text
from . import Context, cli, emit_json, pass_ctx, write_output
from .render import node_line, outline, plural, token_table


@cli.command()
@click.argument("ref")
@click.option("--tree", "mode", flag_value="tree", help="Outline of the subtree (the whole tree for a tree id).")
@click.option("--path", "mode", flag_value="path", help="The nodes from the root to NODE, one per line.")
@click.option("--text", "mode", flag_value="text", help="The full text of the path (default for a node).")
@click.option("--tokens", "mode", flag_value="tokens", help="NODE's tokens with probabilities and alternatives; for "
              "written text, each token's writing cost as the reference model reads it (once `bits` scored it).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (see docs/cli.md).")
@click.option("--archived", is_flag=True, help="Include archived nodes in outlines.")
@pass_ctx
def show(ctx: Context, ref: str, mode: str | None, as_json: bool, archived: bool) -> None:
    """Show a node (its path's full text) or a tree (its outline)."""
    store = ctx.store
    kind, ident = store.resolve(ref)
    with store.read() as tx:
        if kind == "tree":
            tree = tx.tree(ident)
            node, path = tx.node(tree.root_id), None
            mode = mode or "tree"
        else:
            path = tx.path(ident)
            node, tree = path[-1], tx.tree(path[-1].tree_id)
            mode = mode or "text"
        if path is None:
            path = [node]
        nodes = tx.tree_nodes(tree.id) if mode == "tree" else []
    if as_json:
        data = {"tree": tree.to_json(), "node": node.to_json(), "text": path_text(path),
                "path": [n.id for n in path]}
        if mode == "tree":
            data["nodes"] = [n.to_json() for n in _subtree(nodes, node.id, archived)]
        emit_json(data)
    elif mode == "text":
        click.echo(path_text(path))
    elif mode == "tokens":
        click.echo(token_table(node) if node.tokens else _writing_table(ctx, path))
    elif mode == "path":
        for n in path:
            click.echo(node_line(n))
    else:
        click.echo(f"tree {tree.id}: {tree.title}")
        for line in outline(nodes, node.id, include_archived=archived):
            click.echo(line)


def _writing_table(ctx: Context, path) -> str:
    """A written node's tokens as the reference model reads them, each with its writing cost (the scores
    `loomwork bits` keeps; none yet says how to get them)."""
    import asyncio

    from .. import config, ops, tree_settings
    from ..ledger.writing import score_path

    node = path[-1]
    ref = tree_settings.reference_model(ctx.store, node.tree_id, config.default_model())
    _path, memory = ops.read_context(ctx.store, node.id)
    scored = asyncio.run(score_path(ctx.store, path, ref, memory)).get(node.id)
    if scored is None:
        return (f"node {node.id} is {node.origin} text: its tokens are not scored yet; `loomwork bits {node.id}` "
                f"scores them with {ref}, then this shows each token's writing cost")
    rows = [f"writing cost of {node.id} as {ref} reads it (bits = -log2 p):"]
    for t in scored:
        bits = "     ?" if t.logprob is None else f"{-t.logprob / math.log(2):6.2f}"
        rows.append(f"{bits}  {t.text!r}")
    total = sum(-t.logprob for t in scored if t.logprob is not None) / math.log(2)
    rows.append(f"{total:6.2f}  in all, over {plural(len(scored), 'token')}")
    return "\n".join(rows)


def _subtree(nodes, top: str, archived: bool) -> list:
    """The nodes of ``top``'s subtree, as the outline shows them: without --archived an archived node hides its
    descendants too (every node listed has its parent listed, except ``top``)."""
    children: dict = {}
    for n in nodes:
        children.setdefault(n.parent_id, []).append(n)
    by_id = {n.id: n for n in nodes}
    out, stack = [], [by_id[top]] if top in by_id else []
    while stack:
        n = stack.pop()
        if n.archived and not archived and n.id != top:
            continue
        out.append(n)
        stack.extend(reversed(children.get(n.id, [])))
    return out


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON (see docs/cli.md).")
@pass_ctx
def trees(ctx: Context, as_json: bool) -> None:
    """List the trees in the database, newest first."""
    rows = ctx.store.trees()
    if as_json:
        emit_json([{**t.to_json(), "nodes": n} for t, n in rows])
        return
    if not rows:
        click.echo("no trees yet: start one with `loomwork new PROMPT`")
    for t, n in rows:
        click.echo(f"{t.id}  {plural(n, 'node'):>12}  {t.created_at:%Y-%m-%d %H:%M}  {t.title}")


@cli.command()
@click.argument("ref")
@click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS + SUPERVISION_FORMATS), default="json",
              show_default=True, help="json (loomwork's own), pyloom, loomsidian, logitloom, helm (tree.json), miniloom, "
              "jsonl (one node per line), markdown, text; or training data: sft, preference, stepwise, prm800k, "
              "ratings (docs/supervision.md).")
@click.option("--neutral", type=click.Choice(["bad", "good"]), default="bad", show_default=True,
              help="stepwise: how a neutral (0) step rating maps (TRL's converter maps it to bad).")
@click.option("--question", default=STEP_QUESTION, show_default=True,
              help="sft, preference, stepwise, prm800k: the rating question that labels a step.")
@click.option("--rater-names", is_flag=True, help="prm800k, ratings: name the raters (by default each is a "
              "pseudonym, the same throughout this database).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file.")
@pass_ctx
def export(ctx: Context, ref: str, fmt: str, neutral: str, question: str, rater_names: bool,
           output: Path | None) -> None:
    """Export a tree (given a tree id, or any node in it).

    markdown and text show every root-to-leaf path of a tree, or just the path to a node when given one."""
    kind, ident = ctx.store.resolve(ref)
    tree_id = ident if kind == "tree" else ctx.store.node(ident).tree_id
    if fmt in SUPERVISION_FORMATS:
        body = export_jsonl(ctx.store, tree_id, fmt, neutral_is_good=neutral == "good", question=question,
                            rater_names=rater_names)
    else:
        body = formats_io.export(ctx.store, tree_id, fmt, node_id=ident if kind == "node" else None)
    if output:
        write_output(output, body)  # the exact text, control characters and all
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(body, nl=False)


@cli.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(IMPORT_FORMATS + ("prm800k",)), default="auto",
              show_default=True, help="auto detects all but prm800k (PRM800K JSONL, with its ratings).")
@click.option("--under", help="Import as a subtree under this node instead of as new trees.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (see docs/cli.md).")
@pass_ctx
def import_(ctx: Context, file: Path, fmt: str, under: str | None, as_json: bool) -> None:
    """Import a loom file: pyloom, loomsidian, exoloom, bonsai, logitloom, helm, miniloom, JSONL of nodes or
    loomwork's own JSON.

    Each root becomes a new tree (or, with --under, a child of that node). The import is one transaction:
    on any error nothing is written."""
    anchor = None
    if under:
        from .nodes import node_id

        anchor = node_id(ctx, under)
    if fmt == "prm800k":
        if anchor:
            raise InvalidInput("prm800k files import as new trees (one per line); --under does not apply")
        report = prm800k.import_file(ctx.store, file)
    else:
        report = formats_io.import_file(ctx.store, file, fmt, anchor)
    if as_json:
        emit_json(report.to_json())
        return
    click.echo(f"imported {plural(report.nodes, 'node')} ({report.fmt}) into tree{'s' if len(report.trees) > 1 else ''} "
               + ", ".join(report.trees))
    for root in report.roots[:10]:  # under a node, the file's roots hang there: they are not roots of a tree
        click.echo(f"{'grafted' if anchor else 'root'} {root}")
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
