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


def status(m: dict) -> str:
    """"training" only while the process that trains it is alive; else how it ended ("interrupted" if killed)."""
    if m.get("status") == "training":
        pid = m.get("pid")
        try:
            os.kill(int(pid), 0)
            return "training"
        except (OSError, TypeError, ValueError):
            return "interrupted"
    return m.get("status", "?")


def list_adapters() -> list[dict]:
    out = []
    if root().is_dir():
        for d in sorted(root().iterdir()):
            if (d / META).exists():
                try:
                    m = meta(d.name)
                except NotFound:
                    continue
                out.append({**m, "status": status(m)})
    return out


def begin(name: str, record: dict) -> Path:
    """Claim the name for a new training run; refuses a name in use (even a run that was interrupted)."""
    d = directory(name)
    root().mkdir(parents=True, exist_ok=True)
    try:
        d.mkdir()
    except FileExistsError:
        raise InvalidInput(f"an adapter named {name!r} exists already (delete it first, or pick another name)") from None
    (d / ".record.json").write_text(json.dumps(record), encoding="utf-8")  # who claimed it; no checkpoint yet
    return d


def commit(name: str, model, step: int, record: dict) -> None:
    """Save ``model``'s adapter as the current checkpoint, with ``record`` as its description."""
    d = directory(name)
    ckpt = f"ckpt-{step:05d}"
    tmp = d / f".{ckpt}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
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


def delete(name: str) -> None:
    d = directory(name)
    if not d.is_dir():
        raise NotFound(f"no adapter {name!r} (see `loomwork adapters list`)")
    shutil.rmtree(d)
