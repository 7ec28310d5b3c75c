"""A person's choices, the records the selection lever counts (janus, "Quantifying curation"): continuing from 1 of
n siblings is recorded when it is made, with the candidates as shown, so later changes to the tree do not rewrite
what the person saw; a grader's choice (best-of-n, autoloom) is recorded the same way with the grader's name and
what its selection cost (levers/grader.py). The ledger (ledger/) reads them."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InvalidInput
from .levers.selection import selection_bits
from .levers.writing import is_written
from .store import Store, Tx, retrying
from .store import ledger as sql
from .tree import Node, new_id


@dataclass(frozen=True)
class Choice:
    id: str
    parent_id: str
    chosen_id: str
    candidates: tuple[str, ...]
    acceptable: tuple[str, ...] | None
    grader: str | None = None  # the grader that chose (best-of-n, autoloom); None: a person
    pressure: dict | None = None  # a grader's: the KL of its selection (levers/grader.py); None before v8

    @property
    def bits(self) -> float:
        """log2(n/m): the optimization power of a person's choice (for a grader's, the upper bound of its KL)."""
        return selection_bits(len(self.candidates), len(self.acceptable) if self.acceptable else 1)


def counted_bits(node: Node, choice: Choice) -> float | None:
    """What the ledger counts for this choice on this node: a person's selection bits, none for text the person
    wrote (its pressure is its writing bits) or a token taken from the alternatives, a grader's KL (None when it
    was recorded without one)."""
    if "alternative_of" in node.meta or is_written(node):
        return 0.0
    if choice.grader is not None:
        return choice.pressure["kl_bits"] if choice.pressure else None
    return choice.bits


def choice_summary(node: Node, choice: Choice) -> dict:
    """A recorded choice as `choose` and the API report it: ``bits`` is what the ledger counts for it."""
    out = {"id": choice.id, "chosen": choice.chosen_id, "candidates": list(choice.candidates),
           "acceptable": list(choice.acceptable) if choice.acceptable else None, "bits": counted_bits(node, choice)}
    if is_written(node):
        out["note"] = (f"recorded, but the ledger counts it as 0: {node.id} is text you wrote, whose pressure is its "
                       f"writing bits; counting the choice too ({choice.bits:.3f} bits as 1 of "
                       f"{len(choice.candidates)}) would count the same act twice")
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
        if candidates is not None and not candidates:
            raise InvalidInput("the candidates must include at least the chosen node (leave them out for its siblings)")
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
        sql.insert_choice(tx, choice.id, node.tree_id, choice.parent_id, chosen_id, cands, acc, grader, choice.pressure)
    return choice


def latest_choices(store: Store, tree_id: str) -> dict[str, Choice]:
    """The newest choice of each chosen node in a tree (choosing a node again replaces the earlier record)."""
    with store.read() as tx:
        rows = sql.choices_of(tx, tree_id)
    return {r.chosen_id: Choice(r.id, r.parent_id, r.chosen_id, tuple(r.candidates),
                                tuple(r.acceptable) if r.acceptable else None, r.grader, r.pressure) for r in rows}
