"""The optimization ledger: every lever that shaped a node (levers/), each in bits, per node, along a path and over
a tree (report.py); the writing lever's scoring by the reference model (writing.py), the model lever's KL on
request (model_kl.py). Definitions: docs/metrics.md. Each figure is a number, or None with a note saying why it
is unknown; nothing is guessed."""

from .report import node_bits, path_report, totals, tree_report

__all__ = ["node_bits", "path_report", "totals", "tree_report"]
