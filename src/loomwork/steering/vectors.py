"""Steering vectors from contrast pairs, and their records.

A text's activation at layer L is the mean, over its tokens, of the output of decoder block L (the residual
stream; the start token is left out). For pairs (plus_i, minus_i) with differences d_i = act(plus_i) - act(minus_i):

- ``actadd`` (Turner et al., 2023): one pair, v = d_1.
- ``mean`` (contrastive activation addition, Rimsky et al., 2024): v = mean of the d_i.
- ``pca``: the first principal direction u of the differences (the top right-singular vector of the matrix of
  d_i, not centred, so the shared direction counts), signed to agree with their mean and scaled to the mean's
  length along it: v = (mean(d) · u) u.

The vector is stored as it is; an expansion adds coefficient × v at the layer.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InvalidInput
from ..store import Store, retrying
from ..store import steering as sql
from ..tree import new_id
from . import pairs as pairs_mod

METHODS = ("actadd", "mean", "pca")
_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def vector_from(plus: np.ndarray, minus: np.ndarray, method: str) -> np.ndarray:
    """The vector from the plus and minus activations (a row per pair) by ``method``."""
    if method not in METHODS:
        raise InvalidInput(f"unknown method {method!r} (methods: {', '.join(METHODS)})")
    diffs = np.asarray(plus, dtype=np.float64) - np.asarray(minus, dtype=np.float64)
    if method == "actadd":
        if len(diffs) != 1:
            raise InvalidInput(f"actadd takes exactly one pair ({len(diffs)} given): use --method mean for several")
        return diffs[0]
    mean = diffs.mean(0)
    if method == "mean":
        return mean
    if len(diffs) < 2:
        raise InvalidInput("pca needs at least two pairs")
    u = np.linalg.svd(diffs, full_matrices=False)[2][0]
    along = float(mean @ u)
    return along * u  # signed and scaled by the mean difference's component along u


def check_name(name: str) -> str:
    if not name or len(name) > 200 or not set(name) <= _NAME_OK:
        raise InvalidInput(f"a steering vector's name is 1-200 letters, digits, '-', '_' or '.', not {name!r}")
    return name


async def create(store: Store, backend, name: str, layer: int, method: str = "mean",
                 plus: list[str] | tuple[str, ...] = (), minus: list[str] | tuple[str, ...] = (),
                 pairs: list[dict] | None = None) -> dict:
    """Make a vector with ``backend``'s model from the pairs and save it; the record (without the numbers)."""
    check_name(name)
    rows = pairs_mod.collect(plus, minus, pairs)
    if method not in METHODS:
        raise InvalidInput(f"unknown method {method!r} (methods: {', '.join(METHODS)})")
    if not backend.capabilities.steering:
        raise InvalidInput(f"{backend.ref} cannot steer (the hf backend can): make the vector with an hf: model")
    with store.read() as tx:
        if any(v["name"] == name for v in sql.vectors(tx)):
            raise InvalidInput(f"a steering vector named {name!r} exists already (delete it first)")
    acts = await backend.activations([r["plus"] for r in rows] + [r["minus"] for r in rows], layer)
    k = len(rows)
    vec = vector_from(np.array(acts[:k]), np.array(acts[k:]), method)
    norm = float(np.linalg.norm(vec))
    if not math.isfinite(norm) or norm == 0.0:
        raise InvalidInput(f"the pairs give a vector of norm {norm}: the model sees no difference between them")
    record = {"id": new_id(), "name": name, "model": backend.ref, "layer": layer, "method": method, "pairs": rows,
              "norm": norm, "vector": [float(x) for x in vec]}
    _save(store, record)
    return {k: v for k, v in record.items() if k != "vector"} | {"width": len(vec)}


@retrying
def _save(store: Store, record: dict) -> None:
    with store.tx() as tx:
        sql.add_vector(tx, **record)


def list_vectors(store: Store) -> list[dict]:
    with store.read() as tx:
        return [_public(v) for v in sql.vectors(tx)]


def show(store: Store, name: str, with_vector: bool = False) -> dict:
    with store.read() as tx:
        v = sql.vector(tx, name)
    out = _public(v) | {"width": len(v["vector"])}
    if with_vector:
        out["vector"] = v["vector"]
    return out


@retrying
def delete(store: Store, name: str) -> None:
    with store.tx() as tx:
        sql.delete_vector(tx, name)


def _public(v: dict) -> dict:
    out = {k: v[k] for k in ("id", "name", "model", "layer", "method", "norm", "pairs") if k in v}
    out["created_at"] = v["created_at"].isoformat() if hasattr(v.get("created_at"), "isoformat") else v.get("created_at")
    return out
