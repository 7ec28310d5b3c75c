"""The adapter lever: a LoRA adapter carried by a model's name, ``BASE+NAME`` (the model ``hf:BASE+NAME`` is BASE
with adapter NAME merged into its weights when it loads). Where adapters live, ``<LOOMWORK_HOME>/adapters/NAME/``
with ``loomwork.json`` (what it is, how it was trained, which checkpoint is current), and how to read them: the
model layer finds adapters here; tuning/adapters.py writes them. Its ledger cost is the model lever's (a node an
adapter generated: KL(tuned ‖ reference), levers/model.py)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .. import config
from ..errors import InvalidInput, NotFound

META = "loomwork.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
CLAIM = ".record.json"  # written when a run claims the name, before its first checkpoint
PROGRESS = "progress.jsonl"  # the run's events, one JSON object a line (the page follows it)


def root() -> Path:
    return config.home() / "adapters"


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise InvalidInput(f"an adapter's name is 1-64 letters, digits, '.', '_' or '-' (starting with a letter or "
                           f"digit), not {name!r}")
    return name


def directory(name: str) -> Path:
    return root() / check_name(name)


def split_model(model: str) -> tuple[str, str | None]:
    """``"gemma-3-270m+style"`` -> ("gemma-3-270m", "style"); a model without an adapter -> (model, None)."""
    base, plus, name = model.rpartition("+")
    return (base, name) if plus and base and name else (model, None)


def meta(name: str) -> dict:
    path = directory(name) / META
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFound(f"no adapter {name!r} (see `loomwork adapters list`)") from None
    except (OSError, ValueError) as exc:
        raise NotFound(f"adapter {name!r} is unreadable ({exc}): delete it with `loomwork adapters delete`") from None
    return data


def checkpoint(name: str) -> Path:
    """The directory of the adapter's current checkpoint."""
    m = meta(name)
    path = directory(name) / m["checkpoint"]
    if not (path / "adapter_config.json").exists():
        raise NotFound(f"adapter {name!r} has no checkpoint at {path}")
    return path


def alive(pid) -> bool:
    try:
        pid = int(pid)
        os.kill(pid, 0)
    except (OSError, TypeError, ValueError):
        return False
    try:  # a run this process started (the page's) that has ended is a zombie until reaped: reap it
        done, _status = os.waitpid(pid, os.WNOHANG)
        return done != pid
    except ChildProcessError:  # not our child: the signal check above is all there is
        return True


def status(m: dict) -> str:
    """"training" (or "starting", before its first checkpoint) only while the process that trains it is alive;
    else how it ended ("interrupted" if killed, "failed before its first checkpoint" if it never made one)."""
    if m.get("status") in ("training", "starting"):
        if alive(m.get("pid")):
            return m["status"]
        return "interrupted" if m.get("status") == "training" else "failed before its first checkpoint"
    return m.get("status", "?")


def claimed(name: str) -> dict | None:
    """The record of a run that claimed ``name`` but has not committed a checkpoint yet, or None."""
    d = directory(name)
    if (d / META).exists() or not (d / CLAIM).exists():
        return None
    try:
        return {"status": "starting", **json.loads((d / CLAIM).read_text(encoding="utf-8"))}
    except (OSError, ValueError):
        return {"name": name, "status": "starting"}


def describe(name: str) -> dict:
    """An adapter's record with its live status, committed or still starting."""
    m = claimed(name)
    if m is None:
        m = meta(name)
    return {**m, "status": status(m)}


def list_adapters() -> list[dict]:
    """Every adapter, those still being trained included (listed as "starting" or "training")."""
    out = []
    if root().is_dir():
        for d in sorted(root().iterdir()):
            if (d / META).exists() or (d / CLAIM).exists():
                try:
                    out.append(describe(d.name))
                except NotFound:
                    continue
    return out
