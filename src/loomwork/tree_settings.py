"""Per-tree settings, shared by everyone who opens the tree (kept in the tree's ``meta["settings"]``):

- ``memory``: text the model reads before the path (pyloom's memory / global context); not part of any node, so
  it is not shown in the path, and it is recorded with every generation that used it;
- ``reference_model``: the model the optimization accounting scores written text with (None: the tree's base
  model, the one its first generation used, or else the server's default);
- ``generation``: the generation panel's last settings (``{"model", "params"}``), so a reload keeps them;
- ``presets``: named generation settings, as pyloom has.
"""

from __future__ import annotations

from . import validate
from .backends.base import SamplingParams
from .backends.registry import split_ref
from .errors import InvalidInput
from .store import Store, retrying

MAX_PRESETS = 50
DEFAULTS = {"memory": "", "reference_model": None, "generation": {}, "presets": {}}


def _generation(value, where: str) -> dict:
    if not isinstance(value, dict) or set(value) - {"model", "params"}:
        raise InvalidInput(f"{where} must be {{\"model\", \"params\"}}")
    out: dict = {}
    if value.get("model") is not None:
        split_ref(value["model"])
        out["model"] = value["model"]
    params = value.get("params") or {}
    if not isinstance(params, dict):
        raise InvalidInput(f"{where}.params must be an object")
    SamplingParams.make(**params)  # one clear error naming the bad field
    out["params"] = params
    return out


def clean(data) -> dict:
    """Validated settings (unknown keys refused), with defaults for what is left out."""
    if not isinstance(data, dict):
        raise InvalidInput("tree settings must be an object")
    unknown = set(data) - set(DEFAULTS)
    if unknown:
        raise InvalidInput(f"unknown tree settings: {', '.join(sorted(unknown))} (known: {', '.join(DEFAULTS)})")
    out = {**DEFAULTS, **data}
    out["memory"] = validate.text(out["memory"], "the memory", empty_ok=True)
    if out["reference_model"] is not None:
        split_ref(out["reference_model"])
    # an empty object means none; anything else that is not the right shape is refused, not stored as {}
    out["generation"] = _generation(out["generation"], "generation") if out["generation"] != {} else {}
    presets = out["presets"]
    if not isinstance(presets, dict) or len(presets) > MAX_PRESETS:
        raise InvalidInput(f"presets must be an object of at most {MAX_PRESETS} named settings")
    out["presets"] = {validate.name(k, "a preset's name", 80): _generation(v, f"preset {k!r}") for k, v in presets.items()}
    return out


def get(store: Store, tree_id: str) -> dict:
    with store.read() as tx:
        return {**DEFAULTS, **(tx.tree(tree_id).meta.get("settings") or {})}


@retrying
def put(store: Store, tree_id: str, data) -> dict:
    """Replace a tree's settings (validated first: bad settings change nothing). Tabs see the change."""
    settings = clean(data)
    with store.tx() as tx:
        tx.lock_tree(tree_id)
        tx.set_tree_meta(tree_id, {**tx.tree(tree_id).meta, "settings": settings})
    return settings


@retrying
def update(store: Store, tree_id: str, changes) -> dict:
    """Change some settings, keeping the others as they are now in the database (not as a page last saw them:
    one tab saving its generation settings must not wipe the memory another tab just set)."""
    if not isinstance(changes, dict):
        raise InvalidInput("tree settings must be an object")
    with store.tx() as tx:
        tx.lock_tree(tree_id)
        meta = tx.tree(tree_id).meta
        settings = clean({**DEFAULTS, **(meta.get("settings") or {}), **changes})
        tx.set_tree_meta(tree_id, {**meta, "settings": settings})
    return settings


def memory(store: Store, tree_id: str) -> str:
    return get(store, tree_id)["memory"]


def reference_model(store: Store, tree_id: str, default: str) -> str:
    """The model the tree's accounting scores with: its setting, else its base model, else ``default``."""
    chosen = get(store, tree_id)["reference_model"]
    if chosen:
        return chosen
    with store.read() as tx:
        return tx.base_model(tree_id) or default
