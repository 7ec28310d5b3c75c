"""Graders by name. A grader's kind and configuration are stored; a judge's template is stored with every score
it gives (its configuration is part of what each score's cache key hashes)."""

from __future__ import annotations

import importlib
import os
import sys
import re
from datetime import datetime, timezone

from ..backends.pool import PROCESS, ModelPool
from ..errors import InvalidInput, NotFound
from ..store import Store, retrying
from ..store import graders as sql
from ..supervision.ratings import DEFAULT_QUESTIONS
from ..tree import new_id

KINDS = ("judge", "callable", "person", "reward")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DEFAULT_TEMPLATE = ("{context}{text}\n\nQuestion: Is the last passage above well written and coherent? Answer yes "
                    "or no.\nAnswer:")


def resolve_callable(target: str):
    """``module:function`` -> the function; one clear error if it cannot be imported or is not callable."""
    module, sep, attr = (target or "").partition(":")
    if not sep or not module or not attr:
        raise InvalidInput(f"a callable grader is module:function, not {target!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:  # `rules:f` finds rules.py where the command runs
        sys.path.insert(0, os.getcwd())
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise InvalidInput(f"cannot import {target!r} (a module in the current directory or on PYTHONPATH): "
                           f"{exc}") from None
    if not callable(fn):
        raise InvalidInput(f"{target!r} is not callable")
    return fn


def check_usable(grader: dict, models: ModelPool = PROCESS) -> None:
    """Before any sampling: a judge's model loads (from ``models``, which decides who may use it) and can score,
    a callable takes (text, context), a reward model is on disk. A grader that cannot work fails here, before
    anything is written."""
    kind, cfg = grader["kind"], grader["config"]
    if kind == "judge":
        backend = models.get(cfg["model"])
        if not backend.capabilities.scoring:
            raise InvalidInput(f"judge {grader.get('name', '')!r}: {backend.ref} cannot score text")
    elif kind == "callable":
        import inspect

        fn = resolve_callable(cfg["target"])
        try:
            inspect.signature(fn).bind("text", "context")
        except TypeError:
            raise InvalidInput(f"{cfg['target']} must take (text, context)") from None
        except ValueError:  # a builtin without a signature: it will say so per node
            pass
    elif kind == "reward":
        from pathlib import Path

        if not (Path(cfg["path"]) / "config.json").exists():
            raise InvalidInput(f"reward model of {grader.get('name', '')!r} is missing at {cfg['path']}")


def check_config(kind: str, config: dict, models: ModelPool = PROCESS) -> dict:
    if kind == "judge":
        template = config.get("template") or DEFAULT_TEMPLATE
        if "{text}" not in template:
            raise InvalidInput("a judge template needs the slot {text} (and may use {context})")
        if not config.get("model"):
            raise InvalidInput("a judge needs a model with the scoring capability (-m)")
        out = {"model": config["model"], "template": template, "yes": config.get("yes") or " yes",
               "no": config.get("no") or " no"}
        check_usable({"kind": kind, "config": out}, models)
        return out
    if kind == "callable":
        check_usable({"kind": kind, "config": {"target": config.get("target", "")}})
        return {"target": config["target"]}
    if kind == "person":
        return {"question": config.get("question") or DEFAULT_QUESTIONS[0]}
    if kind == "reward":
        if not config.get("path"):
            raise InvalidInput("a reward-model grader is made by training one (create_reward, --reward-from)")
        return {k: config[k] for k in ("path", "base", "rows", "train_rows", "heldout_rows", "epochs", "train_loss",
                                       "train_accuracy", "heldout_accuracy", "seconds") if k in config}
    raise InvalidInput(f"unknown grader kind {kind!r} (kinds: {', '.join(KINDS)})")


@retrying
def create(store: Store, name: str, kind: str, *, models: ModelPool = PROCESS, **config) -> dict:
    if not _NAME.match(name or ""):
        raise InvalidInput(f"a grader's name is 1-64 letters, digits, '.', '_' or '-', not {name!r}")
    row = {"id": new_id(), "name": name, "kind": kind, "config": check_config(kind, config, models),
           "created_at": datetime.now(timezone.utc)}
    with store.tx() as tx:
        if not sql.add_grader(tx, row):
            raise InvalidInput(f"a grader named {name!r} exists already")
    return _public(row)


def create_reward(store: Store, name: str, base: str, rows: list[dict], epochs: int = 1, **train_args) -> dict:
    """Train a reward model on preference rows (chosen over rejected; split by prompt, ``heldout`` or
    ``heldout_rows`` as in tuning) and register it as grader ``name``; a failed training registers nothing."""
    import shutil

    from . import reward

    if not _NAME.match(name or ""):
        raise InvalidInput(f"a grader's name is 1-64 letters, digits, '.', '_' or '-', not {name!r}")
    if any(g["name"] == name for g in list_graders(store)):
        raise InvalidInput(f"a grader named {name!r} exists already")
    made = reward.train(name, base, rows, epochs=epochs, **train_args)
    try:
        return create(store, name, "reward", **made)
    except Exception:
        shutil.rmtree(made["path"], ignore_errors=True)
        raise


def get(store: Store, name: str) -> dict:
    with store.read() as tx:
        row = sql.grader_named(tx, name)
    if row is None:
        raise NotFound(f"no grader {name!r} (see `loomwork grader list`)")
    return _public(row)


def list_graders(store: Store) -> list[dict]:
    with store.read() as tx:
        return [_public(r) for r in sql.all_graders(tx)]


@retrying
def delete(store: Store, name: str) -> None:
    with store.tx() as tx:
        if not sql.delete_grader(tx, name):
            raise NotFound(f"no grader {name!r} (see `loomwork grader list`)")


def _public(row: dict) -> dict:
    made = row.get("created_at")
    return {"id": row["id"], "name": row["name"], "kind": row["kind"], "config": row["config"],
            "created_at": made.isoformat() if hasattr(made, "isoformat") else made}
