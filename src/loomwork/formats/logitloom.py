"""logitloom's token trees (``*.ll.json``, ``logit-loom-tree-v1``; github.com/vgel/logitloom, save-load.ts):

    {"isLogitLoomTreeVersion": "logit-loom-tree-v1", "modelName": "...",
     "modelSettings": {"kind": "base" | "chat", "systemPrompt"?, "prompt"?, "prefill"?},
     "roots": [Token]}     Token: {"id", "text", "logprob", "prob", "branchFinished", "children": [Token]}

Each node is one token; its siblings are the other tokens the model gave at that position (its top logprobs).
Imported, each token is a model node of one token record whose alternatives are its siblings (text, logprob), so
the inspector and the ledger read them; the prompt (and prefill) is the root. A chat tree keeps its user prompt and
system prompt in the tree's meta (the root holds the assistant's prefill: what the model continued). logitloom's
"(model stopped)" marker is not text: its parent is marked as ended instead.

Export writes the same shape: each node's token records as a chain of single tokens (nodes whose tokens start
alike share them), and each position's recorded alternatives that no branch took as leaves beside it.
"""

from __future__ import annotations

import math

from ..errors import InvalidInput
from ..store import Store
from ..tree import Token
from .forest import Item, Parsed

VERSION = "logit-loom-tree-v1"
STOPPED = "(model stopped)"
ROOT = "logitloom:root"


def _fail(where: str, message: str):
    raise InvalidInput(f"logitloom: {where}: {message}")


def parse(data) -> Parsed:
    if not isinstance(data, dict) or data.get("isLogitLoomTreeVersion") != VERSION:
        raise InvalidInput(f"logitloom: not a logitloom tree (isLogitLoomTreeVersion must be {VERSION!r})")
    settings = data.get("modelSettings") or {}
    if not isinstance(settings, dict):
        _fail("modelSettings", "expected an object")
    for field in ("prompt", "prefill", "systemPrompt"):
        if settings.get(field) is not None and not isinstance(settings[field], str):
            _fail(f"modelSettings.{field}", "must be a string")
    chat = settings.get("kind") == "chat"
    model = data.get("modelName")
    if model is not None and not isinstance(model, str):
        _fail("modelName", "must be a string")
    roots = data.get("roots")
    if not isinstance(roots, list):
        _fail("roots", "expected a list of tokens")
    root_text = (settings.get("prefill") or "") if chat else (settings.get("prompt") or "") + (settings.get("prefill") or "")
    items = [Item(key=ROOT, parent=None, text=root_text, origin="prompt", where="modelSettings",
                  meta={"logitloom": {"kind": settings.get("kind", "base")}})]
    notes: list[str] = []
    stopped = 0
    # iteratively (a token tree is as deep as its longest path in tokens): (siblings, parent key, where)
    pending = [(roots, ROOT, "roots")]
    while pending:
        siblings, parent, where = pending.pop()
        tokens = [_token(t, f"{where}[{i}]") for i, t in enumerate(siblings)]
        top = tuple(sorted(((t["text"], t["logprob"]) for t in tokens if t["text"] != STOPPED or t["children"]),
                           key=lambda pair: -pair[1]))
        for i, t in enumerate(tokens):
            here = f"{where}[{i}]"
            if t["text"] == STOPPED and not t["children"] and t["logprob"] == 0:
                stopped += 1
                continue
            items.append(Item(key=f"{here}:{t['id']}", parent=parent, text=t["text"], origin="model", where=here,
                              tokens=(Token(t["text"], t["logprob"], top),),
                              meta={"logitloom": {"id": t["id"]},
                                    **({"finish_reason": "stop"} if t["finished"] else {})}))
            if t["children"]:
                pending.append((t["children"], f"{here}:{t['id']}", f"{here}.children"))
    if stopped:
        notes.append(f"{stopped} '(model stopped)' marker(s) dropped: logitloom's way of saying a branch ended")
    title = (settings.get("prompt") or root_text).strip()[:80] or None
    kept = {"modelName": model, "modelSettings": settings}
    if chat:
        notes.append("a chat tree: the user prompt and system prompt are kept in the tree's meta (logitloom); the "
                     "root is the assistant's prefill")
    return Parsed("logitloom", items, title=title, tree_meta={"logitloom": kept}, notes=notes)


def _token(t, where: str) -> dict:
    if not isinstance(t, dict):
        _fail(where, f"expected a token object, not {type(t).__name__}")
    text = t.get("text")
    if not isinstance(text, str):
        _fail(where, "'text' must be a string")
    lp = t.get("logprob")
    if not isinstance(lp, (int, float)) or isinstance(lp, bool) or not math.isfinite(lp) or lp > 1e-6:
        _fail(where, f"'logprob' must be a finite number at most 0, not {lp!r}")
    children = t.get("children", [])
    if not isinstance(children, list):
        _fail(where, "'children' must be a list")
    ident = t.get("id", where)
    if not isinstance(ident, (str, int)) or isinstance(ident, bool):
        _fail(where, "'id' must be a string")
    return {"id": str(ident), "text": text, "logprob": min(float(lp), 0.0), "children": children,
            "finished": bool(t.get("branchFinished"))}


def export(store: Store, tree_id: str) -> dict:
    """A loomwork tree as a logitloom token tree (see the module's docstring)."""
    with store.read() as tx:
        tree = tx.tree(tree_id)
        nodes = tx.tree_nodes(tree_id)
        models = tx.models_of([n.generation_id for n in nodes if n.generation_id])
    kids: dict[str, list] = {}
    for n in nodes:
        if n.parent_id and not n.archived:
            kids.setdefault(n.parent_id, []).append(n)
    root = next(n for n in nodes if n.parent_id is None)
    kept = tree.meta.get("logitloom") or {}
    settings = kept.get("modelSettings") or {"kind": "base", "prompt": root.text}
    model = kept.get("modelName") or next(iter(models.values()), "unknown")
    counter = iter(range(10**12))
    roots: list[dict] = []
    # (node, the token list its first token goes into); a node's records become a chain of single tokens
    pending = [(k, roots) for k in kids.get(root.id, [])]
    while pending:
        node, into = pending.pop(0)
        records = [t for t in node.tokens if not t.cont] or [Token(node.text, None)]
        for i, record in enumerate(records):
            into = _place(into, record, counter, finished=bool(i == len(records) - 1
                                                               and node.meta.get("finish_reason") == "stop"))
        pending += [(k, into) for k in kids.get(node.id, [])]
    return {"isLogitLoomTreeVersion": VERSION, "modelName": model, "modelSettings": settings, "roots": roots}


def _place(siblings: list[dict], record: Token, counter, finished: bool) -> list[dict]:
    """Put one token among its siblings (joining an equal one already there), with its recorded alternatives
    as leaves beside it; returns the list its next token goes into."""
    here = next((s for s in siblings if s["text"] == record.text), None)
    lp = record.logprob if record.logprob is not None else 0.0
    if here is None:
        here = _leaf(record.text, lp, counter)
        siblings.append(here)
    here["branchFinished"] = here["branchFinished"] or finished
    for text, alt in record.top:
        if not any(s["text"] == text for s in siblings):
            siblings.append(_leaf(text, alt, counter))
    siblings.sort(key=lambda s: -s["logprob"])
    return here["children"]


def _leaf(text: str, logprob: float, counter) -> dict:
    return {"id": f"lw-{next(counter)}", "text": text, "logprob": logprob, "prob": math.exp(logprob),
            "branchFinished": False, "children": []}
