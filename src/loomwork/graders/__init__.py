"""Graders in the loom: things that score a node in its context, and the searches that use them.

- registry.py: graders by name: a judge prompt scored with a model (log P(yes) - log P(no)), a Python callable
  (``module:function``), or a person (the audit ratings already collected). Store, list, show, delete.
- scoring.py: a grader's score of a text in its context; of nodes, cached per grader and context, a failure
  recorded per node while the rest go on.
- bon.py: best-of-n: sample n, score, keep every candidate (tagged), record the pick as the grader's choice.
- goodhart.py: the Goodhart curve: best-of-n's expected proxy and gold scores from one pool of samples, against
  √KL of best-of-n, with the gold curve fitted as d(α − βd) (Gao et al., 2022).
"""
