"""pyloom: janus's original Loom (socketteer/loom) tree files.

A file is ``{"root": node, "chapters", "tags", ...}``, a bare node, or a bare list of nodes. Nodes nest under
``children`` and carry ``id``, ``text`` (their own segment), ``meta.source`` (AI / prompt / mixed) and ``tags``
(``bookmark`` and ``archived`` are tags there, flags here). Per-token logprobs are in ``meta.generation.logprobs``
or ``generation.logprobs`` (older files) or in ``model_responses[id].completions[i].tokens`` (newer ones).
Fields loomwork has no place for are kept in ``meta.pyloom`` and written back on export.
"""

from __future__ import annotations

import math

from datetime import datetime, timezone

from .. import tree_settings
from ..errors import InvalidInput
from ..store import Store
from ..tree import Node, Token
from .forest import Item, Parsed, ident

SOURCE_TO_ORIGIN = {"AI": "model", "prompt": "prompt", "mixed": "edit", "human": "human"}
ORIGIN_TO_SOURCE = {"model": "AI", "prompt": "prompt", "edit": "mixed", "human": "human", "unknown": None}
FLAG_TAGS = {"bookmark", "archived"}
_KNOWN = {"id", "text", "children", "parent_id", "parentId", "meta", "tags", "generation", "bookmark"}
_TIME = "%Y-%m-%d-%H.%M.%S"
DEFAULT_TAGS = {  # the two flag tags as pyloom declares them, so its tag menus know them
    "bookmark": {"name": "bookmark", "scope": "node", "hide": False, "show_only": False, "toggle_key": "b",
                 "icon": "bookmark-black"},
    "archived": {"name": "archived", "scope": "node", "hide": True, "show_only": False, "toggle_key": "!",
                 "icon": "archive-yellow"},
}


def _fail(where: str, msg: str):
    raise InvalidInput(f"pyloom: {where}: {msg}")


def _tile(tokens: list[Token], text: str) -> tuple[Token, ...]:
    """The contiguous run of ``tokens`` whose texts make up exactly ``text`` (completions often include the
    prompt's tokens too), the last such run; empty when there is none (the node was edited after generation)."""
    if not text:
        return ()
    starts = [0]
    for t in tokens:
        starts.append(starts[-1] + len(t.text))
    index = {pos: i for i, pos in enumerate(starts)}
    joined = "".join(t.text for t in tokens)
    for i in range(len(tokens) - 1, -1, -1):
        end = starts[i] + len(text)
        if end in index and joined.startswith(text, starts[i]):
            return tuple(tokens[i : index[end]])
    return ()


def _num(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _list(x) -> list:
    return x if isinstance(x, list) else []


def _alts(raw) -> tuple[tuple[str, float], ...]:
    """Alternatives given as {token: logprob}, [{token, logprob}] or [[token, logprob]]; anything else is ignored."""
    if isinstance(raw, dict):
        pairs = list(raw.items())
    else:
        pairs = [(d.get("token"), d.get("logprob")) if isinstance(d, dict) else tuple(d)
                 for d in _list(raw) if isinstance(d, dict) or (isinstance(d, list) and len(d) == 2)]
    out = [(str(a), _num(b)) for a, b in pairs if isinstance(a, str) and _num(b) is not None]
    return tuple(sorted(out, key=lambda x: -x[1]))


def _legacy_tokens(lp: dict) -> list[Token]:
    toks, lps, tops = _list(lp.get("tokens")), _list(lp.get("token_logprobs")), _list(lp.get("top_logprobs"))
    bad = next((i for i, t in enumerate(toks) if not isinstance(t, str)), None)
    if bad is not None:
        raise InvalidInput(f"logprobs.tokens[{bad}] must be a string, not {type(toks[bad]).__name__}")
    return [Token(t, _num(lps[i]) if i < len(lps) else None, _alts(tops[i]) if i < len(tops) else ())
            for i, t in enumerate(toks)]


def _response_tokens(completion: dict) -> list[Token]:
    out = []
    for t in _list(completion.get("tokens")):
        gen = t.get("generatedToken") if isinstance(t, dict) else None
        if not isinstance(gen, dict) or not isinstance(gen.get("token"), str):
            return []  # malformed token records: the node imports without them
        out.append(Token(gen["token"], _num(gen.get("logprob")), _alts(t.get("counterfactuals"))))
    return out


def _tokens(node: dict, responses: dict) -> tuple[Token, ...]:
    meta = node.get("meta") if isinstance(node.get("meta"), dict) else {}
    for gen in (meta.get("generation"), node.get("generation")):
        if not isinstance(gen, dict):
            continue
        if isinstance(gen.get("logprobs"), dict):
            return _tile(_legacy_tokens(gen["logprobs"]), node["text"])
        rid = gen.get("id")
        resp = responses.get(rid) if isinstance(responses, dict) and isinstance(rid, str) else None
        if isinstance(resp, dict) and isinstance(gen.get("index"), int):
            comps = resp.get("completions") or []
            if 0 <= gen["index"] < len(comps) and isinstance(comps[gen["index"]], dict):
                return _tile(_response_tokens(comps[gen["index"]]), node["text"])
    return ()


def _created(meta: dict) -> datetime | None:
    """pyloom's ``2021-09-16-21.55.18`` (sliced by hand: strptime costs seconds on big files)."""
    ts = meta.get("creation_timestamp")
    if not isinstance(ts, str) or len(ts) != 19 or ts[4] + ts[7] + ts[10] + ts[13] + ts[16] != "---..":
        return None
    try:
        return datetime(int(ts[0:4]), int(ts[5:7]), int(ts[8:10]), int(ts[11:13]), int(ts[14:16]), int(ts[17:19]),
                        tzinfo=timezone.utc)
    except ValueError:
        return None


def parse(data) -> Parsed:
    if isinstance(data, dict) and "root" in data:
        roots, top = [data["root"]], data
    elif isinstance(data, dict) and "text" in data:
        roots, top = [data], {}
    elif isinstance(data, list):
        roots, top = data, {}
    else:
        raise InvalidInput("pyloom: expected {\"root\": node}, a node or a list of nodes")
    responses = top.get("model_responses") or {}
    items: list[Item] = []
    flat = isinstance(data, list) and any(isinstance(n, dict) and ("parent_id" in n or "parentId" in n)
                                          for n in data)
    stack = [(n, None, f"[{i}]" if isinstance(data, list) else "root", 0)
             for i, n in reversed(list(enumerate(roots)))]
    while stack:
        node, parent, where, depth = stack.pop()
        if not isinstance(node, dict):
            _fail(where, f"a node must be an object, not {type(node).__name__}")
        if not isinstance(node.get("text", ""), str):
            _fail(where, f"'text' must be a string, not {type(node.get('text')).__name__}")
        # a node without an id gets a short one of its own: never its path, which grows with depth (quadratic
        # in a deep file: 150 MB of keys from a 145 KB file 5,000 levels deep)
        key = ident(node["id"], "pyloom", where) if "id" in node else f"#{len(items)}"
        if flat:
            parent = node.get("parent_id", node.get("parentId"))
            parent = None if parent is None else ident(parent, "pyloom", where, "parent_id")
        meta = node.get("meta") if isinstance(node.get("meta"), dict) else {}
        tags = node.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            _fail(where, "'tags' must be a list of strings")
        extra = {k: v for k, v in node.items() if k not in _KNOWN}
        kept_meta = {k: v for k, v in meta.items() if k not in ("source", "generation")}
        if isinstance(meta.get("generation"), dict):
            kept_meta["generation"] = {k: v for k, v in meta["generation"].items() if k != "logprobs"}
        source = meta.get("source") if isinstance(meta.get("source"), str) else None
        try:
            tokens = _tokens({**node, "text": node.get("text", "")}, responses)
        except InvalidInput as exc:
            _fail(where, str(exc))
        items.append(Item(
            key=key, parent=parent, text=node.get("text", ""),
            origin=SOURCE_TO_ORIGIN.get(source, "unknown"), where=where,
            tokens=tokens,
            bookmarked="bookmark" in tags or bool(node.get("bookmark")), archived="archived" in tags,
            tags=tuple(t for t in tags if t not in FLAG_TAGS), created_at=_created(meta),
            meta={"pyloom": {"node": extra, "meta": kept_meta, "source": source}},
        ))
        kids = node.get("children", [])
        if not isinstance(kids, list):
            _fail(where, "'children' must be a list")
        if not flat:
            for i, c in reversed(list(enumerate(kids))):
                child = f"node {c['id']!r}" if isinstance(c, dict) and isinstance(c.get("id"), str) else \
                    f"child {i} of node {key!r} (depth {depth + 1})"
                stack.append((c, key, child[:200], depth + 1))
    _name_chapters(items, top.get("chapters"))
    tree_meta = {"pyloom": {k: v for k, v in top.items() if k not in ("root", "model_responses")}}
    notes: list[str] = []
    settings = _settings(top.get("generation_settings"), notes)
    if settings:
        tree_meta["settings"] = settings
    return Parsed("pyloom", items, tree_meta=tree_meta, selected=top.get("selected_node_id"), notes=notes)


def _node_json(n: Node, pyloom_id: dict[str, str]) -> dict:
    kept = n.meta.get("pyloom", {})
    meta = dict(kept.get("meta", {}))
    source = ORIGIN_TO_SOURCE[n.origin]  # unknown: pyloom's oldest nodes carry no source, and come back so
    if source is not None:
        meta["source"] = source
    meta.setdefault("creation_timestamp", n.created_at.astimezone(timezone.utc).strftime(_TIME))
    if n.tokens:
        offsets, pos = [], 0
        for t in n.tokens:
            offsets.append(pos)
            pos += len(t.text)
        meta["generation"] = {**meta.get("generation", {}), "logprobs": {
            "tokens": [t.text for t in n.tokens], "token_logprobs": [t.logprob for t in n.tokens],
            "top_logprobs": [dict(t.top) for t in n.tokens], "text_offset": offsets}}
    tags = list(n.tags) + (["bookmark"] if n.bookmarked else []) + (["archived"] if n.archived else [])
    out = {**kept.get("node", {}), "id": pyloom_id[n.id], "text": n.text, "children": [], "tags": tags, "meta": meta}
    if n.parent_id is not None:
        out["parent_id"] = pyloom_id[n.parent_id]
    return out


def _settings(gen, notes: list[str]) -> dict | None:
    """pyloom's generation settings as the tree's: n, temperature, top-p, response length, stop and its global
    context as the tree's memory. Settings loomwork cannot take are left out, with a note (never a failed import)."""
    if not isinstance(gen, dict):
        return None
    pairs = {"n": gen.get("num_continuations"), "temperature": gen.get("temperature"), "top_p": gen.get("top_p"),
             "max_tokens": gen.get("response_length")}
    params = {k: v for k, v in pairs.items() if _num(v) is not None}
    for k in ("n", "max_tokens"):
        if k in params:
            params[k] = int(params[k])
    stop = gen.get("stop")
    if isinstance(stop, str) and stop:
        params["stop"] = [s.replace("\\n", "\n") for s in stop.split("|") if s]
    memory = gen.get("global_context") if isinstance(gen.get("global_context"), str) else ""
    settings = {"memory": memory, "generation": {"params": params}}
    try:
        return tree_settings.clean(settings)
    except InvalidInput as exc:
        notes.append(f"pyloom's generation settings were not kept: {exc}")
        return None


def _chapter_title(value) -> str:
    title = " ".join(value.split())[:200] if isinstance(value, str) else ""
    return title or "untitled"


def _name_chapters(items: list[Item], chapters) -> None:
    """pyloom's chapters ``{id: {root_id, title}}`` name their root nodes (``meta["chapter"]``); the file's
    chapters dict is kept too, for the ones whose root is not in this file."""
    if not isinstance(chapters, dict):
        return
    titles = {c["root_id"]: _chapter_title(c.get("title")) for c in chapters.values()
              if isinstance(c, dict) and isinstance(c.get("root_id"), str)}
    for it in items:
        if it.key in titles:
            it.meta["chapter"] = titles[it.key]


def _chapters(kept, nodes: list[Node], pyloom_id: dict[str, str]) -> dict:
    """The file's chapters as it had them, with those of this tree as they are now (renamed, added, removed)."""
    out = dict(kept) if isinstance(kept, dict) else {}
    by_root = {v["root_id"]: k for k, v in out.items() if isinstance(v, dict) and isinstance(v.get("root_id"), str)}
    for n in nodes:
        pid, title = pyloom_id[n.id], n.meta.get("chapter")
        cid = by_root.get(pid)
        if title:
            cid = cid or pid
            out[cid] = {**(out.get(cid) or {}), "id": cid, "root_id": pid, "title": title}
        elif cid is not None:
            del out[cid]
    return out


def export(store: Store, tree_id: str) -> dict:
    """The tree as a pyloom file: same schema and field names as pyloom's own, so pyloom opens it."""
    with store.read() as tx:
        tree = tx.tree(tree_id)
        nodes = tx.tree_nodes(tree_id)
    # pyloom ids of imported nodes come back as they were; others are loomwork's ids
    seen: set[str] = set()
    pyloom_id = {}
    for n in nodes:
        orig = (n.meta.get("import") or {}).get("id") if (n.meta.get("import") or {}).get("format") == "pyloom" else None
        pyloom_id[n.id] = orig if orig and orig not in seen else n.id
        seen.add(pyloom_id[n.id])
    as_json = {n.id: _node_json(n, pyloom_id) for n in nodes}
    for n in nodes:
        if n.parent_id is not None:
            as_json[n.parent_id]["children"].append(as_json[n.id])
    root = as_json[tree.root_id]
    top = dict((tree.meta or {}).get("pyloom", {}))
    top["chapters"] = _chapters(top.get("chapters"), nodes, pyloom_id)  # pyloom reads it as an object
    top["tags"] = {**DEFAULT_TAGS, **(top["tags"] if isinstance(top.get("tags"), dict) else {})}
    if top.get("selected_node_id") not in set(pyloom_id.values()):
        top["selected_node_id"] = root["children"][0]["id"] if root["children"] else root["id"]
    return {"root": root, **top}
