"""Process supervision on loom trees: a step is a node, its context its ancestors (see docs/supervision.md)."""
