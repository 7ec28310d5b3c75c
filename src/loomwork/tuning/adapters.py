"""Where adapters live: ``<LOOMWORK_HOME>/adapters/NAME/``, with ``loomwork.json`` (what it is, how it was trained,
which checkpoint is current) and one ``ckpt-NNNN/`` directory of peft adapter files.

A checkpoint is written in full to a new directory, then ``loomwork.json`` is replaced in one step to point at it
(os.replace), then older checkpoints are removed: at every moment the adapter on disk is a complete checkpoint,
so a training run killed at any point leaves the last checkpoint it committed, usable, and nothing half-written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

from .. import config
from ..errors import InvalidInput, NotFound

META = "loomwork.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


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


CLAIM = ".record.json"  # written when a run claims the name, before its first checkpoint
PROGRESS = "progress.jsonl"  # the run's events, one JSON object a line (the page follows it)


def claimed(name: str) -> dict | None:
    """The record of a run that claimed ``name`` but has not committed a checkpoint yet, or None."""
    d = directory(name)
    if (d / META).exists() or not (d / CLAIM).exists():
        return None
    try:
        return {"status": "starting", **json.loads((d / CLAIM).read_text(encoding="utf-8"))}
    except (OSError, ValueError):
        return {"name": name, "status": "starting"}


def fail(name: str, message: str) -> None:
    """Mark a claim that failed before its first checkpoint (kept to be seen; the name can be used again)."""
    record = claimed(name) or {"name": name}
    (directory(name) / CLAIM).write_text(json.dumps({**record, "status": "failed", "error": message}), encoding="utf-8")


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


def delete(name: str, own_run: bool = False) -> None:
    """Delete an adapter; one being trained is refused, unless this is its own run giving up (``own_run``)."""
    d = directory(name)
    if not d.is_dir():
        raise NotFound(f"no adapter {name!r} (see `loomwork adapters list`)")
    if not own_run and status(describe(name)) in ("training", "starting"):
        raise InvalidInput(f"adapter {name!r} is being trained: stop it first (`loomwork adapters stop {name}`)")
    shutil.rmtree(d)
