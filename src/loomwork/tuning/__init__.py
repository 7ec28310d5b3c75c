"""Tuning from curated trees: LoRA adapters trained on loomwork's SFT or preference exports within a KL budget of
their base model, registered as models the loom can use (``hf:BASE+NAME``).

- data.py: training rows from an export file or a tree, checked (line and field named), split into train and
  held-out.
- adapters.py: where adapters live, committed one checkpoint at a time (never half-registered).
- kl.py: per-token KL(tuned ‖ base) on held-out prompts, the base computed by disabling the adapter.
- train.py: the loop (SFT or DPO), evaluating KL at intervals and stopping at the budget.
- report.py: tuned against base on the lens suites.
torch, transformers and peft are imported lazily, inside the functions that need them.
"""
