"""Tx: every query loomwork runs, over one connection inside one transaction. Rows become tree values here."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import datetime, timezone
from typing import Iterable, Sequence

from sqlalchemy import Connection, delete, func, insert, select, update

from ..errors import Corrupt, Forbidden, InvalidInput, NotFound
from ..tree import Generation, Node, Token, Tree
from . import access, events, journal, reads, search
from .dialect import escape_like
from .journal import Journal
from .schema import (adjudications, choices, critiques, generations, grader_scores, node_tags, nodes, oplog, outcomes,
                     queue_roles, queues, ratings, scores, tree_roles, trees)

_CHUNK = 500  # stay far below SQLite's bound-parameter limit in IN (...) lists
_NODE_FIELDS = {"text", "tokens", "parent_id", "bookmarked", "archived", "meta"}


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)  # SQLite hands back naive timestamps


def _looked_up(ident, what: str = "node") -> str:
    """An id as typed, or NotFound at once when it cannot name anything (no id holds NUL or invalid UTF-8; the
    database would only fail to encode it)."""
    if not isinstance(ident, str) or "\x00" in ident or any("\ud800" <= c <= "\udfff" for c in ident):
        raise NotFound(f"no {what} with id {ident!r}")
    return ident



def _chunks(ids: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(ids), _CHUNK):
        yield ids[i : i + _CHUNK]


class Tx:
    def __init__(self, conn: Connection, readonly: bool = False):
        self.conn = conn
        self.readonly = readonly
        self.journal: Journal | None = None
        self._readable: set[str] = set()  # trees this transaction found the principal may read

    def _guard(self, tree_ids: Iterable[str]) -> None:
        """No row of a tree the principal may not read leaves the store, whichever function asked for it."""
        if access.current() is None:
            return
        ask = set(tree_ids) - self._readable
        if hidden := access.unreadable(self.conn, ask):
            raise Forbidden(f"tree {min(hidden)} is not shared with {access.current().name}")
        self._readable |= ask

    # -- locks ---------------------------------------------------------------------------------------------------

    def lock_tree(self, tree_id: str, need: str | None = "editor") -> None:
        """Take the tree's write lock until the transaction ends. Every operation that changes a tree takes it
        before it reads what it will check, so concurrent operations on one tree run one after the other and
        each sees the others' committed changes (PostgreSQL: a row lock on the tree; SQLite: BEGIN IMMEDIATE
        holds the database's write lock already, and SQLAlchemy leaves FOR UPDATE out)."""
        # FOR NO KEY UPDATE: it excludes other writers of the tree but not inserts whose foreign keys point at it
        q = select(trees.c.id).where(trees.c.id == _looked_up(tree_id, "tree")).with_for_update(key_share=True)
        if self.conn.execute(q).first() is None:
            raise NotFound(f"no tree with id {tree_id!r}")
        if need is not None:  # the one check every write makes (store/access.py); the caller may check its own way
            access.require(self.conn, tree_id, need)

    def tree_of(self, node_id: str) -> str:
        tree_id = self.conn.execute(select(nodes.c.tree_id).where(nodes.c.id == _looked_up(node_id))).scalar_one_or_none()
        if tree_id is None:
            raise NotFound(f"no node with id {node_id!r}")
        return tree_id

    def exists(self, node_id: str) -> bool:
        return self.conn.execute(select(nodes.c.id).where(nodes.c.id == _looked_up(node_id))).first() is not None

    def lock(self, node_id: str, need: str | None = "editor") -> Node:
        """Lock the tree of a node (see lock_tree) and read the node as it is now."""
        self.lock_tree(self.tree_of(node_id), need)  # a node never changes tree: reading its tree id before the lock is safe
        return self.node(node_id)

    def log(self, tree_id: str, kind: str, label: str) -> None:
        """Record this transaction's changes as one undoable operation on a tree."""
        self.journal = Journal(self.conn, tree_id, kind, label)

    def _touch(self, ids: Iterable[str]) -> None:
        if self.journal is not None:
            self.journal.touch(ids)

    # -- rows to values ----------------------------------------------------------------------------------------

    def _nodes(self, rows) -> list[Node]:
        rows = list(rows)
        self._guard({r.tree_id for r in rows})
        tags = self._tags([r.id for r in rows]) if rows else {}
        return [
            Node(
                id=r.id, tree_id=r.tree_id, parent_id=r.parent_id, text=r.text, origin=r.origin,
                tokens=tuple(Token.from_json(t) for t in (getattr(r, "tokens", None) or ())),
                generation_id=r.generation_id, sample_index=r.sample_index, source_id=r.source_id,
                bookmarked=bool(r.bookmarked), archived=bool(r.archived), tags=tuple(sorted(tags.get(r.id, ()))),
                meta=r.meta or {}, created_at=_aware(r.created_at), author=getattr(r, "author", None),
            )
            for r in rows
        ]

    def _tags(self, ids: Sequence[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = defaultdict(list)
        for chunk in _chunks(ids):
            for node_id, tag in self.conn.execute(select(node_tags.c.node_id, node_tags.c.tag)
                                                  .where(node_tags.c.node_id.in_(chunk))):
                out[node_id].append(tag)
        return out

    # -- nodes -------------------------------------------------------------------------------------------------

    def node(self, node_id: str) -> Node:
        found = self._nodes(self.conn.execute(select(nodes).where(nodes.c.id == _looked_up(node_id))))
        if not found:
            raise NotFound(f"no node with id {node_id!r}")
        return found[0]

    def nodes(self, ids: Sequence[str]) -> list[Node]:
        """The nodes with these ids, in the order given."""
        ids = [_looked_up(i) for i in ids]
        rows = {}
        for chunk in _chunks(list(ids)):
            rows.update({r.id: r for r in self.conn.execute(select(nodes).where(nodes.c.id.in_(chunk)))})
        missing = [i for i in ids if i not in rows]
        if missing:
            raise NotFound(f"no node with id {missing[0]!r}")
        return self._nodes(rows[i] for i in ids)

    def children(self, node_id: str, include_archived: bool = False) -> list[Node]:
        q = select(nodes).where(nodes.c.parent_id == _looked_up(node_id)).order_by(nodes.c.seq)
        if not include_archived:
            q = q.where(nodes.c.archived == False)  # noqa: E712 (SQL expression, not a Python comparison)
        return self._nodes(self.conn.execute(q))

    def children_of(self, parent_ids: Sequence[str], include_archived: bool = False,
                    tokens: bool = True) -> dict[str, list[Node]]:
        """The children of several nodes at once (in creation order), keyed by parent. ``tokens=False`` leaves
        the token records out (an outline shows none, and decoding them was most of its cost)."""
        out: dict[str, list[Node]] = {p: [] for p in parent_ids}
        columns = nodes.columns if tokens else [c for c in nodes.columns if c.name != "tokens"]
        for chunk in _chunks(list(parent_ids)):
            q = select(*columns).where(nodes.c.parent_id.in_(chunk)).order_by(nodes.c.seq)
            if not include_archived:
                q = q.where(nodes.c.archived == False)  # noqa: E712
            for n in self._nodes(self.conn.execute(q)):
                out[n.parent_id].append(n)
        return out

    def child_counts(self, ids: Sequence[str], include_archived: bool = False) -> dict[str, int]:
        out = {i: 0 for i in ids}
        for chunk in _chunks(list(ids)):
            q = select(nodes.c.parent_id, func.count()).where(nodes.c.parent_id.in_(chunk))
            if not include_archived:
                q = q.where(nodes.c.archived == False)  # noqa: E712
            out.update({p: n for p, n in self.conn.execute(q.group_by(nodes.c.parent_id))})
        return out

    def search(self, text: str, tree_id: str | None = None, limit: int = 50) -> list[Node]:
        """Nodes whose own text contains ``text`` (case-insensitive), oldest first (store/search.py)."""
        return self._nodes(search.rows(self.conn, text, tree_id, limit, access.visible(self.conn)))

    def trails(self, ids: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        """Per node: (id, first 200 characters of text) of each node from the root down to it, in one query."""
        rows = search.ancestry(self.conn, list(ids))
        out = {}
        for i in ids:
            chain, cur = [], i
            while cur is not None and cur in rows and len(chain) <= len(rows):
                chain.append((cur, rows[cur][1]))
                cur = rows[cur][0]
            out[i] = chain[::-1]
        return out

    def mark_read(self, tree_id: str, node_ids: Sequence[str], reader: str) -> int:
        """Mark nodes read by ``reader`` (store/reads.py): no change to the tree, no event, nothing to undo."""
        self._guard([tree_id])
        return reads.mark(self.conn, tree_id, node_ids, reader)

    def read_nodes(self, tree_id: str, reader: str) -> set[str]:
        self._guard([tree_id])
        return reads.read_nodes(self.conn, tree_id, reader)

    def path(self, node_id: str) -> list[Node]:
        """Root-to-node path, by a recursive CTE walking parent links."""
        return self._nodes(self._ancestry(node_id, list(nodes.columns)))

    def path_ids(self, node_id: str) -> list[str]:
        """The ids of the root-to-node path (no rows read but the links)."""
        return [r.id for r in self._ancestry(node_id, [nodes.c.id, nodes.c.parent_id])]

    def _ancestry(self, node_id: str, columns: list) -> list:
        """The rows from the root to ``node_id``, in order.

        UNION (not UNION ALL) and no depth column: the database adds no row twice, so even a corrupt cycle of
        parent links ends the walk; the order is then read off the parent links here, where a cycle is an error."""
        up = select(nodes.c.id, nodes.c.parent_id).where(nodes.c.id == _looked_up(node_id)).cte("up", recursive=True)
        up = up.union(select(nodes.c.id, nodes.c.parent_id).where(nodes.c.id == up.c.parent_id))
        rows = {r.id: r for r in self.conn.execute(select(*columns).join(up, up.c.id == nodes.c.id))}
        if node_id not in rows:
            raise NotFound(f"no node with id {node_id!r}")
        chain, cur = [], node_id
        while cur is not None:
            row = rows.get(cur)
            if row is None:
                raise Corrupt(f"node {chain[-1].id} has a parent {cur} that does not exist (run `loomwork check`)")
            if len(chain) > len(rows):
                raise Corrupt(f"node {node_id} is its own ancestor: a cycle of parent links (run `loomwork check`)")
            chain.append(row)
            cur = row.parent_id
        return chain[::-1]

    def subtree_ids(self, node_id: str) -> list[str]:
        """The node and all its descendants (archived included), by a recursive CTE walking child links (UNION, so
        a corrupt cycle cannot make it run forever)."""
        down = select(nodes.c.id).where(nodes.c.id == node_id).cte("down", recursive=True)
        down = down.union(select(nodes.c.id).where(nodes.c.parent_id == down.c.id))
        return [r[0] for r in self.conn.execute(select(down.c.id))]

    def order_key(self, node_id: str) -> list[int]:
        """The node's place in tree order: the creation numbers (seq) of the nodes on its path. Tree order (a
        parent before its children, siblings in creation order) is the lexicographic order of these keys."""
        return [r.seq for r in self._ancestry(node_id, [nodes.c.id, nodes.c.parent_id, nodes.c.seq])]

    def bookmarked(self, tree_id: str) -> list[str]:
        q = select(nodes.c.id).where(nodes.c.tree_id == tree_id, nodes.c.bookmarked == True)  # noqa: E712
        return [r[0] for r in self.conn.execute(q)]

    def outline_rows(self, parent_ids: Sequence[str], include_archived: bool = False) -> dict[str, list]:
        """Light rows of the children of several nodes (no text beyond 80 characters, no tokens), with the model
        that generated each: what a graph of the tree needs."""
        out: dict[str, list] = {p: [] for p in parent_ids}
        cols = [nodes.c.id, nodes.c.parent_id, func.substr(nodes.c.text, 1, 80).label("text"), nodes.c.origin,
                nodes.c.bookmarked, nodes.c.archived, func.coalesce(nodes.c.meta["by"].as_string(), nodes.c.author).label("by"),
                nodes.c.meta["chapter"].as_string().label("chapter"), generations.c.backend, generations.c.model]
        for chunk in _chunks(list(parent_ids)):
            q = (select(*cols).outerjoin(generations, generations.c.id == nodes.c.generation_id)
                 .where(nodes.c.parent_id.in_(chunk)).order_by(nodes.c.seq))
            if not include_archived:
                q = q.where(nodes.c.archived == False)  # noqa: E712
            for r in self.conn.execute(q):
                out[r.parent_id].append(r)
        return out

    def chapters(self, tree_id: str) -> list[tuple[str, str]]:
        """``(node id, title)`` of the tree's chapters (nodes whose meta names one), in creation order."""
        title = nodes.c.meta["chapter"].as_string()
        q = select(nodes.c.id, title).where(nodes.c.tree_id == tree_id, title.is_not(None)).order_by(nodes.c.seq)
        return [(r[0], r[1]) for r in self.conn.execute(q)]

    def tree_nodes(self, tree_id: str) -> list[Node]:
        """Every node of a tree (archived included), in creation order."""
        return self._nodes(self.conn.execute(select(nodes).where(nodes.c.tree_id == tree_id).order_by(nodes.c.seq)))

    def insert_node(self, node: Node) -> Node:
        self.insert_nodes([node])
        return replace(node, author=journal.current_actor())

    def insert_nodes(self, batch: Sequence[Node]) -> None:
        """Many new nodes in one statement per chunk (imports, benchmarks); parents must come before children."""
        self._touch(n.id for n in batch)
        author = journal.current_actor()  # whoever's operation inserts the rows made them
        rows = [dict(id=n.id, tree_id=n.tree_id, parent_id=n.parent_id, text=n.text, origin=n.origin,
                     tokens=[t.to_json() for t in n.tokens] if n.tokens else None, generation_id=n.generation_id,
                     sample_index=n.sample_index, source_id=n.source_id, bookmarked=n.bookmarked,
                     archived=n.archived, meta=n.meta, created_at=n.created_at, author=author) for n in batch]
        for i in range(0, len(rows), _CHUNK):
            self.conn.execute(insert(nodes), rows[i : i + _CHUNK])
        tags = [{"node_id": n.id, "tag": t} for n in batch for t in n.tags]
        if tags:
            self.conn.execute(insert(node_tags), tags)

    def update_node(self, node_id: str, **fields) -> None:
        unknown = set(fields) - _NODE_FIELDS
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        self._touch([node_id])
        if "tokens" in fields:
            toks = fields["tokens"]
            fields["tokens"] = [t.to_json() for t in toks] if toks else None
        self.conn.execute(update(nodes).where(nodes.c.id == node_id).values(**fields))

    def reparent_children(self, old_parent: str, new_parent: str) -> None:
        """Move every child of ``old_parent`` (except ``new_parent`` itself) under ``new_parent``."""
        if self.journal is not None:
            self._touch(r[0] for r in self.conn.execute(select(nodes.c.id).where(nodes.c.parent_id == old_parent)))
        self.conn.execute(update(nodes).where(nodes.c.parent_id == old_parent, nodes.c.id != new_parent)
                          .values(parent_id=new_parent))

    def add_tags(self, node_id: str, tags: Iterable[str]) -> None:
        self._touch([node_id])
        have = set(self._tags([node_id]).get(node_id, ()))
        new = [t for t in dict.fromkeys(tags) if t not in have]
        if new:
            self.conn.execute(insert(node_tags), [{"node_id": node_id, "tag": t} for t in new])

    def remove_tags(self, node_id: str, tags: Iterable[str]) -> None:
        self._touch([node_id])
        self.conn.execute(delete(node_tags).where(node_tags.c.node_id == node_id, node_tags.c.tag.in_(list(tags))))

    def delete_nodes(self, ids: Sequence[str]) -> None:
        self._touch(ids)
        for chunk in _chunks(list(ids)):
            self.conn.execute(delete(node_tags).where(node_tags.c.node_id.in_(chunk)))
        # Children point at parents: clear the links inside the doomed set first so row order cannot matter.
        for chunk in _chunks(list(ids)):
            self.conn.execute(update(nodes).where(nodes.c.id.in_(chunk)).values(parent_id=None))
        for chunk in _chunks(list(ids)):
            self.conn.execute(delete(nodes).where(nodes.c.id.in_(chunk)))

    def search_ids(self, prefix: str, limit: int = 5) -> tuple[list[str], list[str]]:
        """Node ids and tree ids starting with ``prefix``."""
        like = escape_like(prefix) + "%"
        qn = select(nodes.c.id).where(nodes.c.id.like(like, escape="\\"))
        qt = select(trees.c.id).where(trees.c.id.like(like, escape="\\"))
        if (seen := access.visible(self.conn)) is not None:  # another's tree is not even a candidate
            qn, qt = qn.where(nodes.c.tree_id.in_(seen)), qt.where(trees.c.id.in_(seen))
        n = [r[0] for r in self.conn.execute(qn.limit(limit))]
        t = [r[0] for r in self.conn.execute(qt.limit(limit))]
        return n, t

    def resolve(self, ref: str) -> tuple[str, str]:
        """``("node" | "tree", id)`` for an exact id or a unique prefix of at least 4 characters."""
        ref = _looked_up(ref.strip(), "node or tree")
        seen = access.visible(self.conn)
        node = self.conn.execute(select(nodes.c.tree_id).where(nodes.c.id == ref)).first()
        if node and (seen is None or node.tree_id in seen):
            return "node", ref
        if self.conn.execute(select(trees.c.id).where(trees.c.id == ref)).first() and (seen is None or ref in seen):
            return "tree", ref
        if len(ref) >= 4:
            n, t = self.search_ids(ref)
            hits = [("node", i) for i in n] + [("tree", i) for i in t]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                names = ", ".join(f"{kind} {i}" for kind, i in hits)
                raise InvalidInput(f"{ref!r} is ambiguous: it starts {names}")
        raise NotFound(f"no node or tree with id {ref!r}")

    # -- trees and generations ---------------------------------------------------------------------------------

    def insert_tree(self, tree: Tree) -> Tree:
        self.conn.execute(insert(trees).values(id=tree.id, root_id=tree.root_id, title=tree.title,
                                               created_at=tree.created_at, meta=tree.meta or None))
        access.grant_owner(self.conn, tree.id)
        return tree

    def tree(self, tree_id: str) -> Tree:
        r = self.conn.execute(select(trees).where(trees.c.id == _looked_up(tree_id, "tree"))).first()
        if r is None:
            raise NotFound(f"no tree with id {tree_id!r}")
        self._guard([r.id])
        return Tree(id=r.id, root_id=r.root_id, title=r.title, created_at=_aware(r.created_at), meta=r.meta or {})

    def trees(self) -> list[tuple[Tree, int]]:
        """Every tree with its node count (archived included), newest first."""
        counts = (select(nodes.c.tree_id, func.count().label("n")).group_by(nodes.c.tree_id).subquery())
        q = (select(trees, func.coalesce(counts.c.n, 0).label("n"))
             .outerjoin(counts, counts.c.tree_id == trees.c.id).order_by(trees.c.created_at.desc(), trees.c.id))
        if (seen := access.visible(self.conn)) is not None:  # an account lists the trees shared with it
            q = q.where(trees.c.id.in_(seen))
        return [(Tree(id=r.id, root_id=r.root_id, title=r.title, created_at=_aware(r.created_at)), r.n)
                for r in self.conn.execute(q)]

    def set_tree_meta(self, tree_id: str, meta: dict) -> None:
        """Replace a tree's meta (settings, what an import kept); watching tabs see a new version."""
        self.conn.execute(update(trees).where(trees.c.id == tree_id).values(meta=meta))
        journal.bump(self.conn, tree_id, "settings", {})

    def base_model(self, tree_id: str) -> str | None:
        """``backend:model`` of the tree's first generation, if it has one."""
        first = self.conn.execute(select(generations.c.backend, generations.c.model)
                                  .where(generations.c.tree_id == tree_id)
                                  .order_by(generations.c.created_at).limit(1)).first()
        return f"{first.backend}:{first.model}" if first else None

    def delete_tree(self, tree_id: str) -> None:
        """A whole tree, for good: its nodes, log and every record about them (ratings, scores, critiques), which
        nothing could bring back to life once the log is gone."""
        ids = [r[0] for r in self.conn.execute(select(nodes.c.id).where(nodes.c.tree_id == tree_id))]
        for chunk in _chunks(ids):
            self.conn.execute(delete(scores).where(scores.c.node_id.in_(chunk)))
            self.conn.execute(delete(critiques).where(critiques.c.node_id.in_(chunk)))
            self.conn.execute(delete(grader_scores).where(grader_scores.c.node_id.in_(chunk)))
        self.conn.execute(delete(ratings).where(ratings.c.tree_id == tree_id))
        self.conn.execute(delete(outcomes).where(outcomes.c.tree_id == tree_id))
        self.delete_nodes(ids)
        self.conn.execute(delete(generations).where(generations.c.tree_id == tree_id))
        self.conn.execute(delete(oplog).where(oplog.c.tree_id == tree_id))
        self.conn.execute(delete(choices).where(choices.c.tree_id == tree_id))
        doomed = [q.id for q in self.conn.execute(select(queues.c.id, queues.c.filter))
                  if (q.filter or {}).get("tree") == tree_id]
        if doomed:
            self.conn.execute(delete(ratings).where(ratings.c.queue_id.in_(doomed)))
            self.conn.execute(delete(queue_roles).where(queue_roles.c.queue_id.in_(doomed)))
            self.conn.execute(delete(adjudications).where(adjudications.c.queue_id.in_(doomed)))
            self.conn.execute(delete(queues).where(queues.c.id.in_(doomed)))
        self.conn.execute(delete(tree_roles).where(tree_roles.c.tree_id == tree_id))
        events.forget_tree(self.conn, tree_id)
        reads.forget_tree(self.conn, tree_id)
        self.conn.execute(delete(trees).where(trees.c.id == tree_id))

    def insert_generation(self, g: Generation) -> Generation:
        self.conn.execute(insert(generations).values(
            id=g.id, tree_id=g.tree_id, node_id=g.node_id, backend=g.backend, model=g.model, params=g.params,
            seed=g.seed, duration_s=g.duration_s, prompt_tokens=g.prompt_tokens,
            completion_tokens=g.completion_tokens, created_at=g.created_at,
        ))
        return g

    def generation(self, gen_id: str) -> Generation:
        r = self.conn.execute(select(generations).where(generations.c.id == gen_id)).first()
        if r is None:
            raise NotFound(f"no generation with id {gen_id!r}")
        return Generation(id=r.id, tree_id=r.tree_id, node_id=r.node_id, backend=r.backend, model=r.model,
                          params=r.params, seed=r.seed, duration_s=r.duration_s, prompt_tokens=r.prompt_tokens,
                          completion_tokens=r.completion_tokens, created_at=_aware(r.created_at))

    def models_of(self, gen_ids: Sequence[str]) -> dict[str, str]:
        """``backend:model`` of each of these generations."""
        out = {}
        for chunk in _chunks(list(dict.fromkeys(gen_ids))):
            for r in self.conn.execute(select(generations.c.id, generations.c.backend, generations.c.model)
                                       .where(generations.c.id.in_(chunk))):
                out[r.id] = f"{r.backend}:{r.model}"
        return out

    def generations_of(self, tree_id: str) -> list[Generation]:
        ids = [r[0] for r in self.conn.execute(select(generations.c.id).where(generations.c.tree_id == tree_id)
                                                .order_by(generations.c.created_at))]
        return [self.generation(i) for i in ids]

    # -- history ------------------------------------------------------------------------------------------------

    def step(self, tree_id: str, redo: bool, expect: int | None = None, force: bool = False) -> dict:
        """Undo (or redo) one logged operation of a tree; see journal.step."""
        self.lock_tree(tree_id)
        entry = journal.next_step(self.conn, tree_id, redo)
        if force and entry is not None and entry.actor not in (None, journal.current_actor()):
            access.require(self.conn, tree_id, "owner")  # taking back someone else's work is the owner's call
        return journal.step(self.conn, tree_id, redo, expect, force)

    def undo_preview(self, tree_id: str) -> dict:
        self.tree(tree_id)
        return journal.preview(self.conn, tree_id)

    def history(self, tree_id: str) -> list[dict]:
        self.tree(tree_id)
        return journal.history(self.conn, tree_id)

    def version(self, tree_id: str) -> int:
        return journal.version(self.conn, tree_id)
