"""The mode-collapse lens: how models' output distributions differ, measured exactly where the answer set is
known and by sample statistics where it is not (docs/lens.md)."""
