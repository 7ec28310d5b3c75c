"""Bits of optimization: how much pressure the person curating a tree applied (janus, "Quantifying curation").

- Selection: continuing from 1 of n sibling continuations applies log2(n) bits; having marked m of the n as
  acceptable before choosing, log2(n/m). Each choice is recorded when it is made, with the candidates as shown,
  so later changes to the tree do not rewrite what the person saw.
- Intervention: text a person wrote or edited "selects" it from the model's distribution: it applies
  -sum(log2 p(token | everything before)) bits under a reference model (the tree's memory first, as the model
  reads it). A token picked from a model token's alternatives applies -log2 p of that token, and no selection
  bits (it is not a choice among siblings). Not counted: the root prompt (the starting condition), other prompt
  nodes, and imported nodes of unknown origin.

Scores are cached per node, model and context. What is missing is scored in one pass over the whole path, in the
background when the page asks (generation first, cancelled when the page moves on).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import threading
from dataclasses import dataclass

from .backends.base import Backend
from .errors import BackendError, InvalidInput
from . import ledger, tree_settings
from .store import Store, Tx, retrying
from .tree import Node, Token, new_id

LN2 = math.log(2)


def selection_bits(n: int, m: int = 1) -> float:
    if not 1 <= m <= n:
        raise InvalidInput(f"acceptable must be between 1 and the {n} candidates, not {m}")
    return math.log2(n / m)


@dataclass(frozen=True)
class Choice:
    id: str
    parent_id: str
    chosen_id: str
    candidates: tuple[str, ...]
    acceptable: tuple[str, ...] | None
    grader: str | None = None  # the grader that chose (best-of-n, autoloom); None: a person
    pressure: dict | None = None  # a grader's: the KL of its selection (graders/pressure.py); None before v8

    @property
    def bits(self) -> float:
        """log2(n/m): the optimization power of a person's choice (for a grader's, the upper bound of its KL)."""
        return selection_bits(len(self.candidates), len(self.acceptable) if self.acceptable else 1)


def counted_bits(node: Node, choice: Choice) -> float | None:
    """What the ledger counts for this choice on this node: a person's selection bits, none for text the person
    wrote (its pressure is its writing bits) or a token taken from the alternatives, a grader's KL (None when it
    was recorded without one)."""
    if "alternative_of" in node.meta or _is_written(node):
        return 0.0
    if choice.grader is not None:
        return choice.pressure["kl_bits"] if choice.pressure else None
    return choice.bits


def choice_summary(node: Node, choice: Choice) -> dict:
    """A recorded choice as `choose` and the API report it: ``bits`` is what the ledger counts for it."""
    out = {"id": choice.id, "chosen": choice.chosen_id, "candidates": list(choice.candidates),
           "acceptable": list(choice.acceptable) if choice.acceptable else None, "bits": counted_bits(node, choice)}
    if _is_written(node):
        out["note"] = ("text you wrote: the ledger counts its writing bits (what the reference model gives it), "
                       f"not a choice among siblings, which would count the same act twice ({choice.bits:.3f} bits)")
    return out


def default_candidates(tx: Tx, node: Node) -> list[str]:
    """What one chooses among: the siblings sampled by the same expansion, or else every visible sibling."""
    sibs = tx.children(node.parent_id) if node.parent_id else []
    same = [s.id for s in sibs if node.generation_id and s.generation_id == node.generation_id]
    return same if node.id in same else [s.id for s in sibs if s.id == node.id or not s.archived]


@retrying
def record_choice(store: Store, chosen_id: str, candidates: list[str] | None = None,
                  acceptable: list[str] | None = None, grader: str | None = None,
                  pressure: dict | None = None) -> Choice:
    with store.tx() as tx:  # one transaction: the candidates are siblings when the choice commits
        node = tx.lock(chosen_id)
        if node.parent_id is None:
            raise InvalidInput(f"node {chosen_id} is a root: there is nothing to choose it from")
        if "alternative_of" in node.meta:
            raise InvalidInput(f"node {chosen_id} was taken from a token's alternatives: its bits are the "
                               "probability of that token, not a choice among siblings (it would count twice)")
        cands = list(dict.fromkeys(candidates or default_candidates(tx, node)))
        if chosen_id not in cands:
            raise InvalidInput(f"the chosen node {chosen_id} is not among the candidates")
        for c in tx.nodes(cands):
            if c.parent_id != node.parent_id:
                raise InvalidInput(f"candidate {c.id} is not a sibling of {chosen_id}")
        acc = list(dict.fromkeys(acceptable)) if acceptable else None
        if acc is not None and (chosen_id not in acc or not set(acc) <= set(cands)):
            raise InvalidInput("the acceptable nodes must be candidates and include the chosen one")
        if grader is not None and pressure is not None and set(pressure.get("scores", {})) - set(cands):
            raise InvalidInput("a grader's scores must be of the candidates it chose among")
        choice = Choice(new_id(), node.parent_id, chosen_id, tuple(cands), tuple(acc) if acc else None, grader,
                        pressure if grader is not None else None)
        tx.insert_choice(choice.id, node.tree_id, choice.parent_id, chosen_id, cands, acc, grader, choice.pressure)
    return choice


def latest_choices(store: Store, tree_id: str) -> dict[str, Choice]:
    """The newest choice of each chosen node in a tree (choosing a node again replaces the earlier record)."""
    with store.read() as tx:
        rows = tx.choices_of(tree_id)
    return {r.chosen_id: Choice(r.id, r.parent_id, r.chosen_id, tuple(r.candidates),
                                tuple(r.acceptable) if r.acceptable else None, r.grader, r.pressure) for r in rows}


def _key(context: str, text: str) -> str:
    return hashlib.sha256(f"{len(context)}:{context}{text}".encode()).hexdigest()


def _is_written(node: Node) -> bool:
    """Text a person put in: a written or edited node below the root. Not the root prompt (the starting
    condition), not other prompt nodes (instructions, not choices), not imported text of unknown origin."""
    return node.parent_id is not None and node.origin in ("human", "edit")


def _excluded(node: Node) -> str | None:
    if node.parent_id is None:
        return None
    return {"prompt": "prompt text is a starting condition, not a choice",
            "unknown": "imported without a record of who wrote it"}.get(node.origin)


def edit_span(original: str, edited: str) -> tuple[str, str, str]:
    """(kept before, changed, kept after) of an edit: the edited text's span that differs from the original
    between their common prefix and suffix. A pure deletion changed nothing new; its pressure is the junction it
    made, so the first word after the cut counts as the change (and nothing when the cut is at the end)."""
    p = 0
    while p < min(len(original), len(edited)) and original[p] == edited[p]:
        p += 1
    q = 0
    while q < min(len(original), len(edited)) - p and original[-1 - q] == edited[-1 - q]:
        q += 1
    pre, changed, post = edited[:p], edited[p : len(edited) - q], edited[len(edited) - q :]
    if not changed:
        word = re.match(r"\s*\S+", post)
        changed = word.group() if word else post
        post = post[len(changed):]
    return pre, changed, post


def _originals(tx: Tx, path: list[Node]) -> dict[str, Node | None]:
    """For each edited node on the path, the node it was first made from (following edits of edits), or None
    when that is gone."""
    out: dict[str, Node | None] = {}
    for n in path:
        if n.origin != "edit" or n.parent_id is None:
            continue
        src, seen = n, set()
        while src is not None and src.origin == "edit" and src.source_id and src.id not in seen:
            seen.add(src.id)
            src = tx.node(src.source_id) if tx.exists(src.source_id) else None
        out[n.id] = src if src is not None and src.origin != "edit" else None
    return out


def _written_segments(path: list[Node], originals: dict[str, Node | None]) -> dict[int, tuple[str, str, str]]:
    """Per written node (by index): (text before what counts, what counts, text after) within the node. An edit
    of a model node counts only what the person changed; everything else a person wrote counts whole."""
    out = {}
    for i, n in enumerate(path):
        if not (_is_written(n) and n.text):
            continue
        original = originals.get(n.id)
        if n.origin == "edit" and original is not None and original.origin == "model":
            out[i] = edit_span(original.text, n.text)
        else:
            out[i] = ("", n.text, "")
    return out


async def score_path(store: Store, path: list[Node], ref: str, memory: str = "", backend: Backend | None = None,
                     cancel: threading.Event | None = None) -> dict[str, list[Token] | None]:
    """Reference model ``ref``'s token logprobs of what counts in every written node on the path (its whole text,
    or for an edit of a model node the span the person changed), each after everything before it (the tree's
    memory first). Cached per node, model and context. What is missing is computed with ``backend`` in one pass
    over the whole path, at background priority and cancellable; without a backend it stays None."""
    with store.read() as tx:
        originals = _originals(tx, path)
    spans = _written_segments(path, originals)
    keys, context = {}, memory
    for i, n in enumerate(path):
        if i in spans:
            pre, changed, _post = spans[i]
            keys[i] = _key(context + pre, changed)
        context += n.text
    out: dict[str, list[Token] | None] = {}
    with store.read() as tx:
        for i in spans:
            if not spans[i][1]:
                out[path[i].id] = []  # a cut at the end of a node: nothing new to count
                continue
            cached = tx.score(path[i].id, ref, keys[i])
            out[path[i].id] = None if cached is None else [Token.from_json(t) for t in cached]
    missing = [i for i in spans if out[path[i].id] is None]
    if missing and backend is not None:
        segments, where = [memory], {}
        for i, n in enumerate(path):
            if i in missing:
                pre, changed, post = spans[i]
                segments += [pre, changed, post]
                where[i] = len(segments) - 2
            else:
                segments.append(n.text)
        scored = await backend.score_segments(segments, sorted(where.values()), cancel)
        bad = next((t for i in missing for t in scored[where[i]] if not math.isfinite(t.logprob)), None)
        if bad is not None:  # never cache (or add up) what a broken model says
            raise BackendError(f"{ref} gave a non-finite logprob ({bad.logprob}) for {bad.text!r}: its weights look "
                               "broken; reload it (restart the server)")
        rows = [(path[i].id, keys[i], scored[where[i]]) for i in missing]
        await asyncio.to_thread(_put_scores, store, ref, rows)
        out.update({node_id: toks for node_id, _k, toks in rows})
    return out


@retrying
def _put_scores(store: Store, ref: str, rows: list) -> None:
    with store.tx() as tx:
        for node_id, key, toks in rows:
            tx.put_score(node_id, ref, key, [t.to_json() for t in toks])


def node_bits(node: Node, chosen: dict[str, Choice], scored: dict[str, list[Token] | None],
              can_score: bool, gen: dict | None = None, ref: str | None = None,
              model_kl: dict[str, float | None] | None = None) -> dict:
    """One node's line of the ledger: each lever in bits (None: unknown, with a note), and the older fields
    (selection_bits, intervention_bits) that name the first two levers."""
    written = _is_written(node)
    # a node taken from a token's alternatives: its bits are its probability; a written node: its bits are its
    # text's, never also a choice among siblings (that would count the person's pressure twice)
    choice = None if "alternative_of" in node.meta or written else chosen.get(node.id)
    by_grader = choice is not None and choice.grader is not None
    out = {"id": node.id, "origin": node.origin, "selection_bits": choice.bits if choice and not by_grader else 0.0,
           "choice": {"n": len(choice.candidates), "m": len(choice.acceptable or (1,))} if choice else None,
           "intervention_bits": 0.0, "model_tokens": len(node.tokens) if node.origin == "model" else 0}
    if _excluded(node):
        out["excluded"] = _excluded(node)
    if node.origin == "model" and "alternative_of" in node.meta and node.tokens:
        # a token taken from the model's alternatives was picked by a person: -log2 p of it, and no selection
        out["intervention_bits"] = -sum(t.logprob or 0.0 for t in node.tokens if not t.cont) / LN2
        out["model_tokens"] = 0
    elif written and node.text:
        toks = scored.get(node.id)
        if toks is not None and any(t.logprob is None for t in toks):
            toks = None  # a cached score from before non-finite numbers were refused: unknown, not a crash
        if toks is None:
            out["intervention_bits"] = None
            out["pending"] = can_score  # not scored yet (scoring in the background), or no model to score with
        else:
            out["intervention_bits"] = -sum(t.logprob for t in toks) / LN2
            out["scored_tokens"] = len(toks)
    notes: dict[str, str] = {}
    levers = {"selection": out["selection_bits"], "writing": out["intervention_bits"],
              "grader": counted_bits(node, choice) if by_grader else 0.0}
    if by_grader and levers["grader"] is None:
        notes["grader"] = (f"chosen by {choice.grader} before the KL of a grader's selection was recorded: at most "
                           f"log2 {len(choice.candidates)} = {choice.bits:.2f} bits")
    if node.origin == "unknown":
        levers.update(decoding=0.0, steering=0.0, model=0.0)
    else:
        for name, (value, note) in (("decoding", ledger.decoding_bits(node, gen)),
                                    ("steering", ledger.steering_bits(node, gen)),
                                    ("model", ledger.model_bits(node, gen, ref, model_kl or {}))):
            levers[name] = value
            if note:
                notes[name] = note
    if out["intervention_bits"] is None and not out.get("pending"):
        notes["writing"] = "not scored: no reference model given (or --no-score)"
    out["ledger"] = levers
    if choice and by_grader:
        p = choice.pressure or {}
        out["choice"].update(by=choice.grader, kl_bits=levers["grader"], kl=p.get("rule"),
                             bound_bits=choice.bits, scored=p.get("n"), scores=p.get("scores"))
    elif choice:
        # a person's ranking of every possible outcome is not known: the best-of-n KL's bound ln n - (n-1)/n
        out["choice"].update(by="person", kl_bits=ledger.best_of_n_kl_bound(len(choice.candidates)), kl="bound")
    if notes:
        out["notes"] = notes
    return out


def _totals(rows: list[dict]) -> dict:
    sel = sum(r["selection_bits"] for r in rows)
    unknown = any(r["intervention_bits"] is None for r in rows)
    inter = None if unknown else sum(r["intervention_bits"] for r in rows)
    levers = {}
    for name in ledger.LEVERS:
        values = [r["ledger"][name] for r in rows]
        levers[name] = None if any(v is None for v in values) else sum(values)
    incomplete = [name for name in ledger.LEVERS[2:] if levers[name] is None]
    # writing still being scored: no total yet (never a stale number); a lever unknown for good (an import, a
    # server): the total of what is known, marked incomplete
    total = None if inter is None else sel + inter + sum(levers[n] or 0.0 for n in ledger.LEVERS[2:])
    toks = sum(r["model_tokens"] for r in rows)
    kl = [r["choice"]["kl_bits"] for r in rows if r.get("choice") and r["choice"]["by"] == "person"]
    return {"selection_bits": sel, "intervention_bits": inter, "total_bits": total, "model_tokens": toks,
            "bits_per_token": total / toks if total is not None and toks else None,
            "tokens_per_bit": toks / total if total else None,
            "pending": sum(1 for r in rows if r.get("pending")),
            "ledger": levers, "selection_kl_bits": sum(kl), "incomplete": incomplete}


def _generations(store: Store, nodes: list[Node]) -> dict[str, dict]:
    with store.read() as tx:
        ids = {n.generation_id for n in nodes if n.generation_id}
        return {g: tx.generation(g).to_json() for g in ids}


async def path_report(store: Store, node_id: str, ref: str | None, backend: Backend | None = None,
                      cancel: threading.Event | None = None, with_model_kl: bool = False) -> dict:
    """The ledger per node along the path to ``node_id`` and its sums, under reference model ``ref``. Scores not
    yet cached are computed with ``backend`` (one pass over the path); without one they are reported as pending.
    Without a ``ref``, intervention is unknown."""
    path = store.path(node_id)
    tree_id = path[0].tree_id
    chosen = latest_choices(store, tree_id)
    scored = {} if ref is None else await score_path(store, path, ref, tree_settings.memory(store, tree_id),
                                                     backend, cancel)
    gens = _generations(store, path)
    kl = {}
    if with_model_kl and backend is not None:  # two teacher-forced passes per node another model wrote
        from .model_kl import model_kl

        kl = await model_kl(store, path, gens, backend, tree_settings.memory(store, tree_id))
    rows = [node_bits(n, chosen, scored, ref is not None, gens.get(n.generation_id), ref, kl) for n in path]
    return {"node": node_id, "model": ref, "nodes": rows, "path": _totals(rows)}


async def tree_report(store: Store, tree_id: str, backend: Backend | None, with_model_kl: bool = False) -> dict:
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
    if backend is not None:  # each leaf's path scores every written node on it still unscored, in one pass
        for n in nodes:
            if _is_written(n) and n.id not in scored:
                scored.update(await score_path(store, path_of(n), backend.ref, memory, backend))
    with store.read() as tx:
        gens = {g.id: g.to_json() for g in tx.generations_of(tree_id)}
    ref = backend.ref if backend else None
    kl: dict[str, float | None] = {}
    if with_model_kl and backend is not None:
        from .model_kl import model_kl

        for n in nodes:
            gen = gens.get(n.generation_id) if n.generation_id else None
            if n.origin == "model" and gen and f"{gen['backend']}:{gen['model']}" != ref and n.id not in kl:
                kl.update(await model_kl(store, path_of(n), gens, backend, memory))
    rows = [node_bits(n, chosen, scored, backend is not None, gens.get(n.generation_id), ref, kl) for n in nodes]
    return {"tree": tree_id, "model": ref, "tree_totals": _totals(rows),
            "choices": len(chosen), "written_nodes": sum(1 for n in nodes if _is_written(n))}
