"""Tuning from curated trees: LoRA adapters trained on loomwork's SFT or preference exports within a KL budget of
their base model, registered as models the loom can use (``hf:BASE+NAME``).

- data.py: training rows from an export file or trees, checked (line and field named), split by prompt into train
  and held-out (rows sharing a prompt or a text stay on one side), and their sha256.
- provenance.py: what shaped an adapter: data, base identity, seeds, libraries, command.
- adapters.py: where adapters live, committed one checkpoint at a time (never half-registered), runs in progress.
- losses.py: rows encoded as the model reads them; the SFT, DPO and held-out losses.
- kl.py: per-token KL(tuned ‖ base) on held-out prompts, the base computed by disabling the adapter.
- train.py: the run (SFT or DPO), evaluating KL at intervals, stopping at the budget, resuming.
- jobs.py: runs started from the web page, each in a process of its own; stop requests.
- export.py: a portable PEFT folder or a merged transformers model.
- report.py: tuned against base on the lens suites.
torch, transformers and peft are imported lazily, inside the functions that need them.
"""
