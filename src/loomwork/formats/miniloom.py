"""MiniLoom's loom files: JD-P's Electron loom (github.com/JD-P/miniloom; its fork mimi10v3/miniloom writes the
same). The shapes, as read in JD-P/miniloom:

- ``src/model.js``: ``class Node`` {``id, type`` (root, user, gen, rewrite, import), ``parent, patch, summary,
  timestamp, rating`` (true up, false down, null), ``read, children, model, finishReason, error``, derived values
  not saved}; ``LoomTree``: root ``new Node("1", "root", null, "", "Root Node")`` in ``nodeStore``; ``createNode``:
  ``patch = patch_make(parent's rendered text, text)``, id ``String(Object.keys(nodeStore).length + 1)``;
  ``applyPatches``: the ancestors' patches applied in turn to ""; ``serialize()``: ``{nodeStore: {id: {id,
  timestamp, type, patch, summary, rating, read, parent, children, model, error, finishReason}}}``.
- ``src/file-manager.js`` ``saveFile``/``autoSave``: ``{loomTree: loomTree.serialize(), focus: focusedNode}``,
  ``JSON.stringify``-ed by ``src/main.js``. The first version (commit 19438d3, ``renderer.js``) saved ``{loomTree:
  {root, nodeStore}, focus}``, nodes with ``cache``, "rewrite" nodes with ``feedback``, ``rewritePrompt``, ``model``.
- ``patch``: ``patch_make``'s result (``src/preload.js``) as structured clone and JSON write it: ``[{"diffs":
  [{"0": op, "1": text}, ...], "start1", "start2", "length1", "length2"}]`` (op -1 delete, 0 keep, 1 insert;
  positions in UTF-16 code units), "" for the root. No version writes ``patch_toText``'s text form.

Import applies each patch exactly, hunk by hunk where it says (in UTF-16 units, so emoji come out right); a hunk
that does not match is an error naming the node. A node extending its parent's text becomes a child holding what
it adds. A node changing text its parent had (a rewrite, or a user node made by editing) becomes what loomwork's
copy-on-write edit makes: a sibling of the node whose text it changed (origin ``edit``, ``source_id`` that node)
holding the text from there on, its MiniLoom parent kept in ``meta.miniloom.parent``. Origins: root -> prompt,
user -> human, gen and rewrite -> model, import -> unknown. Read flags become reads, thumbs up/down ratings (+1/-1,
``RATING_QUESTION``), of the person importing; ``focus`` is the node the page opens; ``finishReason`` becomes
``finish_reason``; ``model``, ``summary``, ``error`` and unknown fields stay in ``meta.miniloom``. Derived values
and ``samplerSettingsStore`` (it can hold API keys) are dropped and reported.

Export writes the same shape, ids "1".."N" (MiniLoom numbers new nodes by count; imported ids come back where
they can), an imported edit under its MiniLoom parent again, a loomwork edit under the node it edits (as MiniLoom
records an edit). A root with text gets MiniLoom's empty root above it. loomwork's origin, tags, bookmark and
archived flag ride in a ``loomwork`` field (MiniLoom drops it when it saves).
"""

from __future__ import annotations

import math
import re
import struct
from collections import defaultdict
from datetime import datetime, timezone

from ..errors import InvalidInput
from ..store import Store
from ..store import supervision as sql
from ..store.journal import current_actor
from .forest import Item, Parsed, ident, loomwork_extras, refuse_unstorable_strings

FMT = "miniloom"
RATING_QUESTION = "Is this node good? (MiniLoom's thumbs up / thumbs down)"
MARGIN = 8  # context kept around a change: what diff-match-patch's patch_make keeps (2 × Patch_Margin)
TYPE_ORIGIN = {"root": "prompt", "user": "human", "gen": "model", "rewrite": "model", "import": "unknown"}
ORIGIN_TYPE = {"prompt": "user", "human": "user", "edit": "user", "model": "gen", "unknown": "import"}
_MAPPED = {"id", "timestamp", "patch", "parent", "children", "rating", "read", "finishReason", "loomwork"}
_DERIVED = {"cachedRenderText", "depth", "netCharsAdded", "netWordsAdded", "characterCount", "wordCount",
            "recentlyAdded", "treeStats", "cache", "generationPending"}
_ASTRAL = re.compile("[\U00010000-\U0010FFFF]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _fail(where: str, message: str):
    raise InvalidInput(f"{FMT}: {where}: {message}")


def looks_like(data) -> bool:
    return isinstance(data, dict) and isinstance(data.get("loomTree"), dict) and "nodeStore" in data["loomTree"]


# -- JavaScript's strings: UTF-16 code units, one Python character each ---------------------------------------

def _units(s: str) -> str:
    return _ASTRAL.sub(lambda m: "".join(map(chr, struct.unpack("<2H", m.group().encode("utf-16-le")))), s)


def _chars(u: str) -> str:
    return u.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass") if _SURROGATE.search(u) else u


# -- patches -----------------------------------------------------------------------------------------------------

def _hunks(patch, where: str) -> list[tuple[int, str, str]]:
    """A node's patch as (position, old text, new text) hunks, in UTF-16 units."""
    if patch == "":
        return []
    if not isinstance(patch, list):  # (no MiniLoom saves patch_toText's text: its patches are patch_make's objects)
        _fail(where, f"'patch' must be a list of patches or \"\", not {type(patch).__name__}")
    out, shift = [], 0  # shift: how much the hunks before moved the text (start2 = start1 + shift)
    for i, p in enumerate(patch):
        here = f"{where}: patch[{i}]"
        if not isinstance(p, dict) or not isinstance(p.get("diffs"), list):
            raise InvalidInput(f"{FMT}: {here}: expected {{diffs, start1, start2, length1, length2}}")
        old, new = [], []
        for j, d in enumerate(p["diffs"]):
            op, text = (d if isinstance(d, list) and len(d) == 2 else (d.get("0"), d.get("1")) if isinstance(d, dict)
                        else (None, None))
            if op not in (-1, 0, 1) or isinstance(op, bool) or not isinstance(text, str):
                raise InvalidInput(f"{FMT}: {here}.diffs[{j}]: expected [operation -1, 0 or 1, text] "
                                   "(or {\"0\": operation, \"1\": text})")
            text = _units(text)
            if op != 1:
                old.append(text)
            if op != -1:
                new.append(text)
        old_text, new_text = "".join(old), "".join(new)
        start2 = p.get("start2")
        start1 = start2 - shift if isinstance(start2, int) and not isinstance(start2, bool) else None
        for name, expect, what in (("start2", start2, ""), ("start1", start1, f", start2 less {shift} (the hunks before)"),
                                   ("length1", len(old_text), f", the length of its diffs ({len(old_text)})"),
                                   ("length2", len(new_text), f", the length of its diffs ({len(new_text)})")):
            v = p.get(name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0 or v != expect:
                raise InvalidInput(f"{FMT}: {here}: '{name}' must be a whole number ≥ 0{what}, not {v!r}")
        shift += len(new_text) - len(old_text)
        out.append((start2, old_text, new_text))
    return out


def _apply(hunks: list[tuple[int, str, str]], text: str, where: str) -> str:
    """Each hunk at the position it names, exactly: where MiniLoom's parent text differs, the file is broken."""
    for i, (at, old, new) in enumerate(hunks):
        if text[at: at + len(old)] != old:
            found = text[at: at + len(old)]
            _fail(where, f"its patch does not apply to its parent's text: hunk {i} expects "
                         f"{_chars(old)[:40]!r} at character {at}, where the text has {_chars(found)[:40]!r}")
        text = text[:at] + new + text[at + len(old):]
    return text


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if a[:mid] == b[:mid] else (lo, mid)
    return lo


def _common_suffix(a: str, b: str, limit: int) -> int:
    return _common_prefix(a[len(a) - limit:][::-1], b[len(b) - limit:][::-1]) if limit else 0


# -- import --------------------------------------------------------------------------------------------------

def _node(key: str, n, where: str) -> dict:
    if not isinstance(n, dict):
        _fail(where, f"a node must be an object, not {type(n).__name__}")
    if "id" in n and ident(n["id"], FMT, where) != key:
        _fail(where, f"its 'id' {n['id']!r} is not its key {key!r}")
    if not isinstance(n.get("type"), str):
        _fail(where, f"'type' must be a string (root, user, gen, rewrite, import), not {type(n.get('type')).__name__}")
    if "parent" not in n:
        _fail(where, "'parent' is missing (null for the root)")
    parent = None if n["parent"] is None else ident(n["parent"], FMT, where, "parent")
    if parent is not None and "patch" not in n:
        _fail(where, "'patch' is missing")
    children = n.get("children", [])
    if not isinstance(children, list):
        _fail(where, f"'children' must be a list of ids, not {type(children).__name__}")
    for name in ("rating", "read"):
        if not (n.get(name) is None or isinstance(n[name], bool)):
            _fail(where, f"'{name}' must be true, false or null, not {n[name]!r}")
    ts, created = n.get("timestamp"), None
    if ts is not None:
        try:
            created = None if isinstance(ts, bool) else datetime.fromtimestamp(ts / 1000, tz=timezone.utc)
        except (TypeError, OverflowError, ValueError, OSError):
            pass
        if created is None:
            _fail(where, f"'timestamp' must be milliseconds since 1970, not {ts!r}")
    return {"parent": parent, "children": [ident(c, FMT, where, "children") for c in children],
            "created": created}


def parse(data) -> Parsed:
    if not isinstance(data, dict):
        raise InvalidInput(f"{FMT}: expected {{loomTree: {{nodeStore}}, focus}}")
    tree = data.get("loomTree")
    if not isinstance(tree, dict):
        _fail("loomTree", "expected an object with a nodeStore")
    store = tree.get("nodeStore")
    if not isinstance(store, dict) or not store:
        _fail("loomTree.nodeStore", "expected an object of nodes by id")
    wheres = {key: f"loomTree.nodeStore[{key[:80]!r}]" for key in store}
    info = {key: _node(key, n, wheres[key]) for key, n in store.items()}
    notes: list[str] = []
    kids: dict[str | None, list[str]] = defaultdict(list)
    for key, i in info.items():
        if i["parent"] is not None and i["parent"] not in info:
            _fail(wheres[key], f"parent {i['parent']!r} of node {key!r} does not exist")
        kids[i["parent"]].append(key)
    _order_children(kids, info, notes)
    if not kids[None]:
        _fail("loomTree.nodeStore", "no node is a root (parent null): the parent links form a cycle")
    items: list[Item] = []
    texts: dict[str, tuple[str, str]] = {}  # (UTF-16 units, characters) of nodes whose children are to come
    left: dict[str, int] = {}
    lw_parent: dict[str, str | None] = {}
    end: dict[str, int] = {}
    edits = 0
    stack = list(reversed(kids[None]))
    while stack:
        key = stack.pop()
        n, i, where = store[key], info[key], wheres[key]
        p = i["parent"]
        base_u, base_c = texts[p] if p is not None else ("", "")
        full_u = _apply(_hunks(n.get("patch", ""), where), base_u, where)
        full_c = _chars(full_u) if full_u is not base_u else base_c
        origin = TYPE_ORIGIN.get(n["type"], "unknown")
        x, source = p, None
        if p is not None and not full_c.startswith(base_c):
            k = _common_prefix(base_c, full_c)
            source, x = p, lw_parent[p]
            while x is not None and end[x] > k:
                source, x = x, lw_parent[x]
            origin, edits = "edit", edits + 1
        lw_parent[key], end[key] = x, len(full_c)
        kept = {k: v for k, v in n.items() if k not in _MAPPED and k not in _DERIVED and v is not None}
        if x != p:
            kept["parent"] = p
        if i["children"]:
            kept["children"] = i["children"]  # MiniLoom's order of them, which loomwork's does not keep (edits move)
        extra = loomwork_extras(n.get("loomwork"), FMT, where)
        meta = {FMT: kept, **({"finish_reason": n["finishReason"]} if isinstance(n.get("finishReason"), str) else {})}
        refuse_unstorable_strings(meta, f"{FMT}: {where}")
        items.append(Item(key=key, parent=x, text=full_c[end[x]:] if x is not None else full_c,
                          origin=extra.get("origin", origin), where=where, source=source, meta=meta,
                          bookmarked=extra.get("bookmarked", False), archived=extra.get("archived", False),
                          tags=extra.get("tags", ()), created_at=i["created"], read=n.get("read") is True,
                          rating={True: 1, False: -1}.get(n.get("rating"))))
        if kids.get(key):
            texts[key], left[key] = (full_u, full_c), len(kids[key])
            stack.extend(reversed(kids[key]))
        if p is not None:
            left[p] -= 1
            if not left[p]:
                del texts[p]
    if len(items) < len(store):
        stuck = next(k for k in store if k not in lw_parent)
        _fail(wheres[stuck], f"the parent links of node {stuck!r} form a cycle")
    if edits:
        notes.append(f"{edits} node(s) change text their parent already had (MiniLoom's rewrites and edits): each "
                     "became an edit, beside the node whose text it changed; its MiniLoom parent is kept in "
                     "meta.miniloom.parent")
    if rated := sum(it.rating is not None for it in items):
        notes.append(f"{rated} thumbs up/down became your ratings (+1/-1) on the question {RATING_QUESTION!r}")
    if derived := sorted({k for n in store.values() for k in n if k in _DERIVED}):
        notes.append("derived values MiniLoom recomputes were not kept: " + ", ".join(derived))
    tree_meta = {k: v for k, v in data.items() if k not in ("loomTree", "focus", "samplerSettingsStore")}
    refuse_unstorable_strings(tree_meta, f"{FMT}: the top level")
    if "samplerSettingsStore" in data:
        notes.append("samplerSettingsStore (MiniLoom's sampler settings) was not kept: it can hold API keys")
    selected = _focus(data.get("focus"), store, notes)
    title = next((" ".join(it.text.split())[:60] for it in items if it.text.strip()), None)
    return Parsed(FMT, items, title=title, tree_meta={FMT: tree_meta} if tree_meta else {}, notes=notes,
                  selected=selected, rating_question=RATING_QUESTION)


def _order_children(kids: dict, info: dict, notes: list[str]) -> None:
    """Siblings in their parent's ``children`` order (a node the list leaves out after, in file order); the
    ``parent`` links decide the structure, as they do MiniLoom's text. Disagreements are noted."""
    dangling = unlisted = 0
    for parent, mine in kids.items():
        if parent is None:
            continue
        listed = info[parent]["children"]
        dangling += sum(c not in info for c in listed)
        rank = {c: i for i, c in reversed(list(enumerate(listed))) if c in info and info[c]["parent"] == parent}
        unlisted += sum(c not in rank for c in mine)
        mine.sort(key=lambda c: rank.get(c, len(listed)))
    if dangling:
        notes.append(f"{dangling} 'children' entr{'y names' if dangling == 1 else 'ies name'} no node (dropped)")
    if unlisted:
        notes.append(f"{unlisted} node(s) are missing from their parent's 'children' (or listed under another "
                     "node): placed under their 'parent', after the listed children")


def _focus(focus, store: dict, notes: list[str]) -> str | None:
    key = str(focus.get("id")) if isinstance(focus, dict) else None
    if focus is not None and key not in store:
        notes.append("the focused node is not in the file: the root is shown instead")
    return key if key in store else None


# -- export ------------------------------------------------------------------------------------------------------

def _patch_json(at: int, before: str, old: str, new: str, after: str) -> list[dict]:
    """One hunk, as MiniLoom saves it (texts in UTF-16 units here, characters in the file)."""
    if old == new:
        return []
    diffs = [{"0": op, "1": _chars(t)} for op, t in ((0, before), (-1, old), (1, new), (0, after)) if t]
    return [{"diffs": diffs, "start1": at, "start2": at, "length1": len(before) + len(old) + len(after),
             "length2": len(before) + len(new) + len(after)}]


def _is_low(c: str) -> bool:
    return "\udc00" <= c <= "\udfff"


def _append_patch(tail_u: str, length_u: int, added_u: str) -> list[dict]:
    """The patch from a text (its last units ``tail_u``, its length) to that text followed by ``added_u``."""
    before = tail_u[-MARGIN:]
    if before and _is_low(before[0]) and len(tail_u) > len(before):
        before = tail_u[-MARGIN - 1:]  # never half a surrogate pair
    return _patch_json(length_u - len(before), before, "", added_u, "")


def _change_patch(a: str, b: str) -> list[dict]:
    """A patch from ``a`` to ``b`` (UTF-16 units): their common start and end kept, the middle replaced."""
    if a == b:
        return []
    p = _common_prefix(a, b)
    s = _common_suffix(a, b, min(len(a), len(b)) - p)
    if p and "\ud800" <= a[p - 1] <= "\udbff":
        p -= 1
    if s and _is_low(a[len(a) - s]):
        s -= 1
    c0 = max(0, p - MARGIN)
    c0 -= 1 if c0 and _is_low(a[c0]) else 0
    c1 = min(len(a), len(a) - s + MARGIN)
    c1 += 1 if c1 < len(a) and _is_low(a[c1]) else 0
    return _patch_json(c0, a[c0:p], a[p:len(a) - s], b[p:len(b) - s], a[len(a) - s:c1])


def export(store: Store, tree_id: str) -> dict:
    """A loomwork tree as a MiniLoom file (see the module's docstring)."""
    who = current_actor()
    with store.read() as tx:
        tree = tx.tree(tree_id)
        nodes = tx.tree_nodes(tree_id)
        read = tx.read_nodes(tree_id, who)
        ratings = {r["node_id"]: r["label"] for r in sql.ratings_for(tx, tree_id=tree_id)
                   if r["rater"] == who and r["question"] == RATING_QUESTION}  # oldest first: the latest wins
        models = tx.models_of([n.generation_id for n in nodes if n.generation_id])
    by_id = {n.id: n for n in nodes}
    kids: dict[str, list] = defaultdict(list)
    for n in nodes:
        if n.parent_id is not None:
            kids[n.parent_id].append(n)
    root = by_id[tree.root_id]
    top = [root.id]  # loomwork ids from the root down, parents first
    for nid in top:
        top.extend(k.id for k in kids[nid])
    synthetic = root.text != ""  # MiniLoom's root is empty: a root with text goes under one
    ml_id = _ids(nodes, root, synthetic)
    mparent = _miniloom_parents(nodes, by_id, root)
    # what each patch needs: a node's text length in UTF-16 units and its last characters (full texts for edits)
    length: dict[str | None, int] = {None: 0}
    tail: dict[str | None, str] = {None: ""}
    for nid in top:
        n = by_id[nid]
        length[nid] = length[n.parent_id] + len(_units(n.text))
        tail[nid] = (tail[n.parent_id] + n.text)[-2 * MARGIN:]

    records: dict[str, dict] = {}
    if synthetic:
        records["1"] = _record("1", "root", "", "Root Node", tree.created_at, None, False, None, None, {}, {})
    for nid in top:
        n = by_id[nid]
        kept = dict(n.meta.get(FMT)) if isinstance(n.meta.get(FMT), dict) else {}
        kept.pop("parent", None), kept.pop("children", None)
        mp = mparent[nid]
        if mp == n.parent_id:
            patch = _append_patch(_units(tail[mp]), length[mp], _units(n.text)) if n.parent_id or synthetic else ""
        else:
            patch = _change_patch(_full(by_id, mp), _full(by_id, nid))
        is_root = nid == root.id and not synthetic
        typ = kept.pop("type", None) if isinstance(kept.get("type"), str) else None
        if not typ or (typ == "root") != is_root:
            typ = "root" if is_root else ORIGIN_TYPE[n.origin]
        summary = kept.pop("summary", None)
        if not isinstance(summary, str):
            summary = "Root Node" if typ == "root" else " ".join(n.text.split()[:3]) or "Branch"
        model = kept.pop("model", None) or (models.get(n.generation_id) if n.generation_id else None)
        extra = {"origin": n.origin, **({"tags": list(n.tags)} if n.tags else {}),
                 **({"bookmarked": True} if n.bookmarked else {}), **({"archived": True} if n.archived else {})}
        up = ml_id[mp] if mp is not None else ("1" if synthetic else None)
        thumb = {1: True, -1: False}.get(ratings.get(nid))
        records[ml_id[nid]] = _record(ml_id[nid], typ, patch, summary, n.created_at, up, nid in read, thumb, model,
                                      {**kept, "finishReason": n.meta.get("finish_reason")}, extra)
    ml_key = _imported(nodes)
    for n in sorted(nodes, key=lambda n: _rank(by_id.get(mparent[n.id]), n.id, ml_key)):
        if mparent[n.id] is not None or synthetic:  # an imported node's children as MiniLoom had them, then others
            records[ml_id[mparent[n.id]] if mparent[n.id] is not None else "1"]["children"].append(ml_id[n.id])
    selected = (tree.meta or {}).get("selected")
    focus = records[ml_id[selected]] if selected in ml_id else records["1"]
    kept_top = (tree.meta or {}).get(FMT) if isinstance((tree.meta or {}).get(FMT), dict) else {}
    return {**kept_top, "loomTree": {"nodeStore": dict(sorted(records.items(), key=lambda kv: int(kv[0])))},
            "focus": focus}


def _full(by_id: dict, nid: str) -> str:
    """A node's whole text (its path's texts), in UTF-16 units."""
    parts = []
    while nid is not None:
        parts.append(by_id[nid].text)
        nid = by_id[nid].parent_id
    return _units("".join(reversed(parts)))


def _record(mid: str, typ: str, patch, summary: str, created: datetime, parent: str | None, read: bool,
            rating, model, kept: dict, extra: dict) -> dict:
    """A node as model.js's serialize() writes it (its fields in that order), then what else it carried."""
    finish = kept.pop("finishReason", None)
    error = kept.pop("error", None)
    out = {"id": mid, "timestamp": int(created.timestamp() * 1000), "type": typ, "patch": patch, "summary": summary,
           "rating": rating, "read": read, "parent": parent, "children": [], "model": model, "error": error,
           "finishReason": finish}
    out.update({k: v for k, v in kept.items() if k not in out})
    if extra:
        out["loomwork"] = extra
    return out


def _ids(nodes: list, root, synthetic: bool) -> dict[str, str]:
    """MiniLoom ids "1".."N" ("1" the root): an imported node keeps its id where it is free."""
    total = len(nodes) + synthetic
    out: dict[str, str] = {} if synthetic else {root.id: "1"}
    taken = {"1"}
    for n in nodes:
        imported = n.meta.get("import") or {}
        orig = imported.get("id") if imported.get("format") == FMT else None
        if n.id not in out and isinstance(orig, str) and orig.isdigit() and orig not in taken \
                and 1 < int(orig) <= total and str(int(orig)) == orig:
            out[n.id] = orig
            taken.add(orig)
    free = (str(i) for i in range(2, total + 1) if str(i) not in taken)
    for n in nodes:
        if n.id not in out:
            out[n.id] = next(free)
    return out


def _imported(nodes: list) -> dict[str, str]:
    """The loomwork id of each MiniLoom id imported into this tree."""
    out: dict[str, str] = {}
    for n in nodes:
        imported = n.meta.get("import") or {}
        if imported.get("format") == FMT and isinstance(imported.get("id"), str):
            out.setdefault(imported["id"], n.id)
    return out


def _rank(parent, nid: str, ml_key: dict[str, str]) -> float:
    """A node's place among its MiniLoom parent's children: where the imported file had it, else after them."""
    kept = (parent.meta.get(FMT) or {}).get("children") if parent is not None else None
    order = [ml_key.get(k) for k in kept] if isinstance(kept, list) else []
    return order.index(nid) if nid in order else math.inf


def _reads_back(n, chosen: str, by_id: dict) -> bool:
    """Whether ``n`` under MiniLoom parent ``chosen`` imports back where it is: ``chosen`` is below a sibling of
    ``n`` (not ``n`` itself) whose text ``n``'s does not begin with (else ``n`` would land under that sibling)."""
    below = by_id[chosen]
    while below.parent_id is not None and below.parent_id != n.parent_id:
        below = by_id[below.parent_id]
    return below.parent_id == n.parent_id and below.id != n.id and not n.text.startswith(below.text)


def _miniloom_parents(nodes: list, by_id: dict, root) -> dict[str, str | None]:
    """Each node's MiniLoom parent: its loomwork parent, except an edit: under the node it was made from in
    MiniLoom (an imported one) or the node it edits (loomwork's), as MiniLoom records an edit."""
    ml_key = _imported(nodes)
    out: dict[str, str | None] = {}
    for n in nodes:
        out[n.id] = n.parent_id
        kept = n.meta.get(FMT) if isinstance(n.meta.get(FMT), dict) else {}
        if n.parent_id is None:
            continue
        was = ml_key.get(kept.get("parent")) if isinstance(kept.get("parent"), str) else None
        source = n.source_id if n.origin == "edit" else None
        for chosen in (was, source):
            if chosen in by_id and _reads_back(n, chosen, by_id):
                out[n.id] = chosen
                break
    # a chosen parent inside the node's own subtree (or a loop of such choices) would make a cycle: those nodes
    # go back under their loomwork parent (whose chain then reaches the root)
    children = defaultdict(list)
    for nid, p in out.items():
        children[p].append(nid)
    reached, stack = set(), [root.id]
    while stack:
        nid = stack.pop()
        reached.add(nid)
        stack.extend(children[nid])
    for nid in out:
        if nid not in reached:
            out[nid] = by_id[nid].parent_id
    return out
