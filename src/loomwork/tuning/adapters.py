"""Writing adapters (reading them: levers/adapter.py, whose names this module also gives): ``<LOOMWORK_HOME>/adapters/NAME/``, with ``loomwork.json`` (what it is, how it was trained,
which checkpoint is current) and one ``ckpt-NNNN/`` directory of peft adapter files.

A checkpoint is written in full to a new directory, then ``loomwork.json`` is replaced in one step to point at it
(os.replace), then older checkpoints are removed: at every moment the adapter on disk is a complete checkpoint,
so a training run killed at any point leaves the last checkpoint it committed, usable, and nothing half-written.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

from ..errors import InvalidInput, NotFound
from ..store import access
from ..levers.adapter import (CLAIM, META, PROGRESS, alive, check_name, checkpoint, claimed, describe,  # noqa: F401
                              directory, list_adapters, meta, root, split_model, status)


def fail(name: str, message: str) -> None:
    """Mark a claim that failed before its first checkpoint (kept to be seen; the name can be used again)."""
    record = claimed(name) or {"name": name}
    (directory(name) / CLAIM).write_text(json.dumps({**record, "status": "failed", "error": message}), encoding="utf-8")


def begin(name: str, record: dict) -> Path:
    """Claim the name for a new training run; refuses a name in use (even a run that was interrupted), except a
    claim whose process died before its first checkpoint (nothing of it is usable)."""
    d = directory(name)
    root().mkdir(parents=True, exist_ok=True)
    try:
        d.mkdir()
    except FileExistsError:
        stale = claimed(name)
        if stale is None or status(stale) in ("training", "starting"):
            raise InvalidInput(f"an adapter named {name!r} exists already (delete it first, or pick another name)"
                               ) from None
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
    (d / CLAIM).write_text(json.dumps(record), encoding="utf-8")  # who claimed it; no checkpoint yet
    return d


def log(name: str, event: dict) -> None:
    """Append one of the run's events to its progress file."""
    with (directory(name) / PROGRESS).open("a", encoding="utf-8") as f:
        f.write(json.dumps(event) + "\n")


def events(name: str, start: int = 0) -> tuple[list[dict], int]:
    """The run's events from byte ``start`` on, and where the next read starts (only whole lines)."""
    path = directory(name) / PROGRESS
    try:
        with path.open("rb") as f:
            f.seek(start)
            chunk = f.read()
    except FileNotFoundError:
        return [], start
    end = chunk.rfind(b"\n") + 1
    out = []
    for line in chunk[:end].splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out, start + end


def commit(name: str, model, step: int, record: dict, extra=None) -> None:
    """Save ``model``'s adapter as the current checkpoint, with ``record`` as its description; ``extra(dir)``
    writes more into the checkpoint before it is committed (the optimizer's state, for a resume)."""
    d = directory(name)
    ckpt = f"ckpt-{step:05d}"
    tmp = d / f".{ckpt}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    if extra is not None:
        extra(tmp)
    shutil.rmtree(d / ckpt, ignore_errors=True)
    tmp.rename(d / ckpt)
    write_meta(name, {**record, "checkpoint": ckpt})
    for old in d.glob("ckpt-*"):
        if old.name != ckpt:
            shutil.rmtree(old, ignore_errors=True)


def write_meta(name: str, data: dict) -> None:
    d = directory(name)
    tmp = d / f".{META}.tmp"
    tmp.write_text(json.dumps({**data, "updated_at": datetime.now(timezone.utc).isoformat()}, indent=1),
                   encoding="utf-8")
    os.replace(tmp, d / META)


def abandon(name: str) -> None:
    """Remove a claimed name that never committed a checkpoint (a run that failed before its first one)."""
    d = directory(name)
    if d.is_dir() and not (d / META).exists():
        shutil.rmtree(d, ignore_errors=True)


def maker(record: dict) -> str | None:
    """Who started the run that made an adapter (the account, on a server with accounts)."""
    return ((record.get("data") or {}).get("source") or {}).get("by")


def delete(name: str, own_run: bool = False) -> None:
    """Delete an adapter; one being trained is refused, unless this is its own run giving up (``own_run``). Run
    as an account, only the adapter's maker (or an admin) may."""
    d = directory(name)
    if not d.is_dir():
        raise NotFound(f"no adapter {name!r} (see `loomwork adapters list`)")
    if not own_run:
        access.require_maker(maker(describe(name)), f"adapter {name!r}")
    if not own_run and status(describe(name)) in ("training", "starting"):
        raise InvalidInput(f"adapter {name!r} is being trained: stop it first (`loomwork adapters stop {name}`)")
    shutil.rmtree(d)
