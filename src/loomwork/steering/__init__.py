"""Latent steering: vectors made from contrast pairs, added to a model's residual stream during generation.

- pairs.py: contrast pairs from the command line or a JSONL file, checked.
- vectors.py: a vector from the pairs' activations (ActAdd, mean difference, first principal component), saved by
  name with its model, layer, method, pairs and norm; list, show, delete.
- resolve.py: the vectors an expansion names, checked against the model that will use them.
The forward-pass side lives with the backend that can do it (backends/hf_steer.py).
"""
