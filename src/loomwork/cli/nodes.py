"""Commands that change a tree: new, add, edit, split, merge, archive, bookmark, tag, move, delete."""

from __future__ import annotations

import click

from .. import ops
from ..errors import InvalidInput
from ..validate import terminal_safe
from . import Context, cli, emit_json, pass_ctx, read_stdin
from .render import node_line

json_flag = click.option("--json", "as_json", is_flag=True, help="Print JSON (see docs/cli.md).")


def node_id(ctx: Context, ref: str) -> str:
    kind, ident = ctx.store.resolve(ref)
    if kind != "node":
        root = ctx.store.tree(ident).root_id
        raise InvalidInput(f"{ref!r} is a tree; this command needs a node (the tree's root is {root})")
    return ident


def _print_node(node, as_json: bool) -> None:
    if as_json:
        emit_json(node.to_json())
    else:
        click.echo(node_line(node))


@cli.command()
@click.argument("prompt")
@click.option("--title", help="A title for the tree (default: the prompt's first line, or its first sentence if "
              "long, up to 48 characters).")
@json_flag
@pass_ctx
def new(ctx: Context, prompt: str, title: str | None, as_json: bool) -> None:
    """Start a tree from PROMPT; prints the tree id and the root node id. Use - to read PROMPT from stdin."""
    if prompt == "-":
        prompt = read_stdin("the prompt")
    tree, root = ops.new_tree(ctx.store, prompt, title)
    if as_json:
        emit_json({"tree": tree.to_json(), "root": root.to_json()})
    else:
        click.echo(f"tree {tree.id}\nroot {root.id}")


@cli.command()
@click.argument("node")
@click.argument("text")
@json_flag
@pass_ctx
def add(ctx: Context, node: str, text: str, as_json: bool) -> None:
    """Add a child written by you (origin human) under NODE."""
    _print_node(ops.add_child(ctx.store, node_id(ctx, node), text), as_json)


@cli.command()
@click.argument("node")
@click.argument("text")
@json_flag
@pass_ctx
def edit(ctx: Context, node: str, text: str, as_json: bool) -> None:
    """Edit NODE's text as a copy: a new sibling with origin edit; NODE and its subtree stay as they are."""
    _print_node(ops.edit(ctx.store, node_id(ctx, node), text), as_json)


@cli.command()
@click.argument("node")
@click.argument("offset", type=int)
@json_flag
@pass_ctx
def split(ctx: Context, node: str, offset: int, as_json: bool) -> None:
    """Split NODE at character OFFSET: NODE keeps the head, a new child takes the tail and the children."""
    head, tail = ops.split(ctx.store, node_id(ctx, node), offset)
    if as_json:
        emit_json({"head": head.to_json(), "tail": tail.to_json()})
    else:
        click.echo(node_line(head))
        click.echo(node_line(tail))


@cli.command()
@click.argument("node")
@json_flag
@pass_ctx
def merge(ctx: Context, node: str, as_json: bool) -> None:
    """Merge NODE with its only child."""
    _print_node(ops.merge(ctx.store, node_id(ctx, node)), as_json)


@cli.command()
@click.argument("node")
@click.option("--restore", is_flag=True, help="Unarchive instead.")
@json_flag
@pass_ctx
def archive(ctx: Context, node: str, restore: bool, as_json: bool) -> None:
    """Archive NODE (hidden with its subtree, never lost); --restore brings it back."""
    _print_node(ops.set_archived(ctx.store, node_id(ctx, node), not restore), as_json)


@cli.command()
@click.argument("node")
@click.option("--off", is_flag=True, help="Remove the bookmark.")
@json_flag
@pass_ctx
def bookmark(ctx: Context, node: str, off: bool, as_json: bool) -> None:
    """Bookmark NODE (or remove its bookmark with --off)."""
    _print_node(ops.set_bookmark(ctx.store, node_id(ctx, node), not off), as_json)


@cli.command()
@click.argument("node")
@click.argument("tags", nargs=-1, required=True)
@click.option("--remove", is_flag=True, help="Remove these tags instead.")
@json_flag
@pass_ctx
def tag(ctx: Context, node: str, tags: tuple[str, ...], remove: bool, as_json: bool) -> None:
    """Add TAGS to NODE (or remove them with --remove)."""
    _print_node(ops.tag(ctx.store, node_id(ctx, node), *tags, remove=remove), as_json)


@cli.command()
@click.argument("node")
@click.argument("new_parent")
@json_flag
@pass_ctx
def move(ctx: Context, node: str, new_parent: str, as_json: bool) -> None:
    """Move NODE (and its subtree) under NEW_PARENT in the same tree."""
    _print_node(ops.move(ctx.store, node_id(ctx, node), node_id(ctx, new_parent)), as_json)


@cli.command()
@click.argument("ref")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def delete(ctx: Context, ref: str, yes: bool) -> None:
    """Delete a node and its subtree (undo brings it back), or a whole tree for good (a tree id or its root)."""
    kind, ident = ctx.store.resolve(ref)
    if kind == "node" and ctx.store.node(ident).parent_id is None:
        kind, ident = "tree", ctx.store.node(ident).tree_id  # a root stands for its whole tree
    if not yes:
        question = (f"Delete the whole tree {ident}, for good (no undo)?" if kind == "tree" else
                    f"Delete node {ident} and everything under it? (undo brings it back)")
        click.confirm(question, abort=True)
    count = ops.delete_tree(ctx.store, ident) if kind == "tree" else ops.delete_subtree(ctx.store, ident)
    click.echo(f"deleted {count} node{'s' if count != 1 else ''}")


def tree_id(ctx: Context, ref: str) -> str:
    kind, ident = ctx.store.resolve(ref)
    return ident if kind == "tree" else ctx.store.node(ident).tree_id


def _whose(entry: dict) -> str:
    return "yours" if entry["mine"] else f"by {entry['actor']}"


def _step_command(name: str, redo: bool, doc: str) -> None:
    @cli.command(name, help=doc)
    @click.argument("ref")
    @click.option("--dry-run", is_flag=True, help=f"Only say what {name} would {'replay' if redo else 'take back'}, "
                  "and whose it is.")
    @click.option("--force", is_flag=True, help=f"{name.capitalize()} even if another person did that operation.")
    @json_flag
    @pass_ctx
    def step(ctx: Context, ref: str, dry_run: bool, force: bool, as_json: bool) -> None:
        tree = tree_id(ctx, ref)
        if dry_run:
            entry = ops.undo_preview(ctx.store, tree)[name]
            if as_json:
                emit_json(entry)
            elif entry is None:
                click.echo(f"nothing to {name} in tree {tree}")
            else:
                click.echo(f"{name} would take back #{entry['seq']} {entry['label']} ({_whose(entry)}, "
                           f"{entry['created_at'][:19]})" if not redo else
                           f"redo would replay #{entry['seq']} {entry['label']} ({_whose(entry)})")
            return
        done = (ops.redo if redo else ops.undo)(ctx.store, tree, force=force)
        emit_json(done) if as_json else click.echo(
            f"{'redid' if redo else 'undid'} #{done['seq']} {done['label']} ({_whose(done)})")


_step_command("undo", False, "Take back the newest operation on a tree (give a tree id or any node id in it). "
                             "Another person's operation is refused unless --force; --dry-run says what it would do.")
_step_command("redo", True, "Replay the operation the last undo took back (same --force and --dry-run as undo).")


@cli.command()
@click.argument("ref")
@json_flag
@pass_ctx
def history(ctx: Context, ref: str, as_json: bool) -> None:
    """The operation log of a tree, oldest first (undone operations marked)."""
    with ctx.store.read() as tx:
        entries = tx.history(tree_id(ctx, ref))
    if as_json:
        emit_json(entries)
        return
    for e in entries:
        who = e["actor"] or "?"
        click.echo(f"{e['seq']:>5}  {e['created_at'][:19]}  {who:<12} {terminal_safe(e['label'])}"
                   f"{'  (undone)' if e['undone'] else ''}")
