"""The ledger itself: each node's line (every lever's bits, or None with a note), a path's and a tree's totals,
from the levers' costs (levers/) and the records they read: choices (curation.py), written text scored by the
reference model (writing.py), generations' per-token figures, the model lever on request (model_kl.py)."""

from __future__ import annotations

import threading

from .. import tree_settings
from ..backends.base import Backend
from ..errors import Unsupported
from ..backends.pool import PROCESS, ModelPool
from ..curation import Choice, counted_bits, latest_choices
from ..levers import LEVERS, NAMES, public
from ..levers.decoding import decoding_bits
from ..levers.model import identity, model_bits
from ..levers.selection import best_of_n_kl_bound
from ..levers.steering import steering_bits
from ..levers.writing import excluded, is_written
from ..store import Store
from ..tree import Node, Token
from ..units import LN2
from .writing import score_path


def node_bits(node: Node, chosen: dict[str, Choice], scored: dict[str, list[Token] | None],
              can_score: bool | str, gen: dict | None = None, ref: str | None = None,
              model_kl: dict[str, float | None] | None = None) -> dict:
    """One node's line of the ledger: each lever in bits under its one name (None: unknown, with a note), and the
    documented older fields (selection_bits, intervention_bits) that repeat the first two levers."""
    written = is_written(node)
    # a node taken from a token's alternatives: its bits are its probability; a written node: its bits are its
    # text's, never also a choice among siblings (that would count the person's pressure twice)
    choice = None if "alternative_of" in node.meta or written else chosen.get(node.id)
    by_grader = choice is not None and choice.grader is not None
    levers: dict[str, float | None] = {"selection": choice.bits if choice and not by_grader else 0.0,
                                       "writing": 0.0}
    notes: dict[str, str] = {}
    extra: dict = {}
    model_tokens = len(node.tokens) if node.origin == "model" else 0
    if node.origin == "model" and "alternative_of" in node.meta and node.tokens:
        # a token taken from the model's alternatives was picked by a person: -log2 p of it, and no selection
        levers["writing"] = -sum(t.logprob or 0.0 for t in node.tokens if not t.cont) / LN2
        model_tokens = 0
    elif written and node.text:
        toks = scored.get(node.id)
        if toks is not None and any(t.logprob is None for t in toks):
            toks = None  # a cached score from before non-finite numbers were refused: unknown, not a crash
        if toks is None:
            levers["writing"] = None
            extra["pending"] = can_score is True  # not scored yet (scoring in the background), or it cannot be
        else:
            levers["writing"] = -sum(t.logprob for t in toks) / LN2
            extra["scored_tokens"] = len(toks)
    if node.origin == "unknown":
        levers.update(decoding=0.0, steering=0.0, model=0.0)
    else:
        for name, (value, note) in (("decoding", decoding_bits(node, gen)),
                                    ("steering", steering_bits(node, gen)),
                                    ("model", model_bits(node, gen, ref, model_kl or {}))):
            levers[name] = value
            if note:
                notes[name] = note
    levers["grader"] = counted_bits(node, choice) if by_grader else 0.0
    if by_grader and levers["grader"] is None:
        notes["grader"] = (f"chosen by {choice.grader} before the KL of a grader's selection was recorded: at most "
                           f"log2 {len(choice.candidates)} = {choice.bits:.2f} bits")
    if levers["writing"] is None and not extra.get("pending"):
        notes["writing"] = can_score if isinstance(can_score, str) else "not scored: no reference model given (or --no-score)"
        if isinstance(can_score, str):
            extra["unscorable"] = True
    out = {"id": node.id, "origin": node.origin, "selection_bits": levers["selection"], "choice": None,
           "intervention_bits": levers["writing"], "model_tokens": model_tokens}
    if excluded(node):
        out["excluded"] = excluded(node)
    if node.meta.get("carried_from"):  # an edit carried it: its figures are those of the text before the edit
        out["carried"] = (f"carried by an edit from node {node.meta['carried_from']}: generated or written after the "
                          f"earlier text of node {node.meta.get('written_after')}, and its figures are that text's")
    out.update(extra)
    if gen and (gen.get("params") or {}).get("precision"):
        out["precision"] = gen["params"]["precision"]  # what its decoding and steering figures were computed in
    out["ledger"] = {name: levers[name] for name in NAMES}
    if choice and by_grader:
        p = choice.pressure or {}
        out["choice"] = {"n": len(choice.candidates), "m": len(choice.acceptable or (1,)), "by": choice.grader,
                         "kl_bits": levers["grader"], "kl": p.get("rule"), "bound_bits": choice.bits,
                         "scored": p.get("n"), "scores": p.get("scores")}
        for extra in ("k", "temperature", "values"):  # what the figure was computed from, beside the scores
            if p.get(extra) is not None:
                out["choice"][extra] = p[extra]
    elif choice:
        # a person's ranking of every possible outcome is not known: the best-of-n KL's bound ln n - (n-1)/n
        out["choice"] = {"n": len(choice.candidates), "m": len(choice.acceptable or (1,)),
                         "kl_bits": best_of_n_kl_bound(len(choice.candidates)), "kl": "bound", "by": "person"}
    if notes:
        out["notes"] = notes
    return out


def totals(rows: list[dict]) -> dict:
    """Each lever summed over ``rows`` (None if unknown on any), and the total: none while a lever whose unknown
    means "pending" is unknown (writing being scored: never a stale number), else the sum of what is known, with
    ``incomplete`` naming the levers unknown for good (an import, a server)."""
    levers = {}
    for name in NAMES:
        values = [r["ledger"][name] for r in rows]
        levers[name] = None if any(v is None for v in values) else sum(values)
    # a "pending" lever unknown on rows whose model cannot compute it (llama-server cannot score) is unknown for good
    for_good = {lever.name for lever in LEVERS if lever.unknown == "pending" and levers[lever.name] is None
                and all(r.get("unscorable") for r in rows if r["ledger"][lever.name] is None)}
    pending = any(levers[lever.name] is None for lever in LEVERS
                  if lever.unknown == "pending" and lever.name not in for_good)
    incomplete = [lever.name for lever in LEVERS if levers[lever.name] is None
                  and (lever.unknown == "incomplete" or lever.name in for_good)]
    total = None if pending else sum(levers[name] or 0.0 for name in NAMES)
    toks = sum(r["model_tokens"] for r in rows)
    kl = [r["choice"]["kl_bits"] for r in rows if r.get("choice") and r["choice"]["by"] == "person"]
    return {"selection_bits": levers["selection"], "intervention_bits": levers["writing"], "total_bits": total,
            "model_tokens": toks, "bits_per_token": total / toks if total is not None and toks else None,
            "tokens_per_bit": toks / total if total else None,
            "pending": sum(1 for r in rows if r.get("pending")),
            "ledger": levers, "selection_kl_bits": sum(kl, 0.0), "incomplete": incomplete}


def _generations(store: Store, nodes: list[Node]) -> dict[str, dict]:
    with store.read() as tx:
        ids = {n.generation_id for n in nodes if n.generation_id}
        return {g: tx.generation(g).to_json() for g in ids}


async def path_report(store: Store, node_id: str, ref: str | None, backend: Backend | None = None,
                      cancel: threading.Event | None = None, with_model_kl: bool = False,
                      models: ModelPool = PROCESS) -> dict:
    """The ledger per node along the path to ``node_id`` and its sums, under reference model ``ref``. Scores not
    yet cached are computed with ``backend`` (one pass over the path); without one they are reported as pending.
    Without a ``ref``, intervention is unknown."""
    path = store.path(node_id)
    tree_id = path[0].tree_id
    chosen = latest_choices(store, tree_id)
    can_score: bool | str = ref is not None
    try:
        scored = {} if ref is None else await score_path(store, path, ref, tree_settings.memory(store, tree_id),
                                                         backend, cancel)
    except Unsupported as exc:  # a model that cannot score (llama-server): the writing lever is unknown, and why
        scored, can_score = {}, f"not scored: {exc}"
    gens = _generations(store, path)
    kl = {}
    if with_model_kl and backend is not None:  # two teacher-forced passes per node another model wrote
        from .model_kl import model_kl

        kl = await model_kl(store, path, gens, backend, tree_settings.memory(store, tree_id), models)
    rows = [node_bits(n, chosen, scored, can_score, gens.get(n.generation_id), ref, kl) for n in path]
    return {"node": node_id, "model": ref, "precision": backend.precision() if backend else None,
            "levers": public(), "nodes": rows, "path": totals(rows)}


async def tree_report(store: Store, tree_id: str, backend: Backend | None, with_model_kl: bool = False,
                      models: ModelPool = PROCESS) -> dict:
    """The ledger summed over a whole tree: every recorded choice, every written node, every generated node."""
    with store.read() as tx:
        nodes = tx.tree_nodes(tree_id)
    by_id = {n.id: n for n in nodes}
    chosen = latest_choices(store, tree_id)
    memory = tree_settings.memory(store, tree_id)

    def path_of(n: Node) -> list[Node]:
        out = [n]
        while out[-1].parent_id is not None:
            out.append(by_id[out[-1].parent_id])
        return out[::-1]

    scored: dict[str, list[Token] | None] = {}
    can_score: bool | str = backend is not None
    try:
        if backend is not None:  # each leaf's path scores every written node on it still unscored, in one pass
            for n in nodes:
                if is_written(n) and n.id not in scored:
                    scored.update(await score_path(store, path_of(n), backend.ref, memory, backend))
    except Unsupported as exc:
        can_score = f"not scored: {exc}"
    with store.read() as tx:
        gens = {g.id: g.to_json() for g in tx.generations_of(tree_id)}
    ref = backend.ref if backend else None
    kl: dict[str, float | None] = {}
    if with_model_kl and backend is not None:
        from .model_kl import model_kl

        for n in nodes:
            gen = gens.get(n.generation_id) if n.generation_id else None
            if n.origin == "model" and gen and identity(f"{gen['backend']}:{gen['model']}") != identity(ref) \
                    and n.id not in kl:
                kl.update(await model_kl(store, path_of(n), gens, backend, memory, models))
    rows = [node_bits(n, chosen, scored, can_score, gens.get(n.generation_id), ref, kl) for n in nodes]
    return {"tree": tree_id, "model": ref, "precision": backend.precision() if backend else None,
            "levers": public(), "tree_totals": totals(rows),
            "choices": len(chosen), "written_nodes": sum(1 for n in nodes if is_written(n))}
