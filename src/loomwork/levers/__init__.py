"""Every lever that shapes a tree, in one registry: the ledger sums them, and the CLI, the API and the page (through
the API) read their list and descriptions here, never from a copy. Each lever's spec, how it is applied and its
ledger cost live together in its module (docs/metrics.md defines every figure):

- selection.py: a person's 1-of-n choice, log2(n/m), and the best-of-n KL beside it.
- writing.py: text a person wrote or changed: what counts (the edit span), scored by the ledger's reference model.
- decoding.py: temperature and truncation: KL(sampling ‖ model), recorded with each token as it is sampled.
- steering.py: activation-addition vectors (the spec an expansion names) and KL(steered ‖ unsteered).
- model.py: a node another model generated: KL(generating ‖ reference).
- grader.py: a grader's choice: the KL of its selection over the scores it saw.
- adapter.py: a LoRA adapter carried by a model's name (``BASE+NAME``): where it lives and how it is found.

A figure is a number of bits or None with a note; nothing here imports a model, an engine or the store.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Lever:
    name: str  # the one name of its figure: the key in every ledger line, total and JSON
    what: str  # what it measures
    per_node: str  # how a node's figure is defined (docs/metrics.md has the whole definition)
    unknown: str  # what an unknown value does to a total: "pending" (no total yet) or "incomplete" (≥ the rest)


LEVERS: tuple[Lever, ...] = (
    Lever("selection", "a person's 1-of-n choice among siblings",
          "log2(n/m); beside it the choice read as best-of-n: KL ≤ ln n − (n−1)/n", "incomplete"),
    Lever("writing", "text a person wrote or changed", "−Σ log2 p(token) under the reference model", "pending"),
    Lever("decoding", "temperature, top-p, top-k, min-p",
          "Σ over its tokens of KL(sampling distribution ‖ model distribution)", "incomplete"),
    Lever("steering", "activation-addition vectors",
          "Σ over its tokens of KL(steered ‖ unsteered next-token distribution)", "incomplete"),
    Lever("model", "a node another model generated (a tuned adapter, a different model)",
          "Σ over its tokens of KL(generating model ‖ reference)", "incomplete"),
    Lever("grader", "a grader's choice (best-of-n, judge-guided growth)",
          "the KL of its selection over the scores it saw (ties, temperature); log2 n at most", "incomplete"),
)
NAMES: tuple[str, ...] = tuple(lever.name for lever in LEVERS)


def public() -> list[dict]:
    """The registry as the API gives it to the page."""
    return [asdict(lever) for lever in LEVERS]
