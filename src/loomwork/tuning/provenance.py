"""What shaped an adapter, recorded with it so anyone can say what it was trained on and run it again: the data
(its source, row counts, sha256 of the exact rows, the held-out prompts), the base model's identity (package and
version, or path, with the sha256 of its weights), seeds, library versions and the command."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import shlex
import sys
from pathlib import Path

from .. import config
from ..backends.catalog import PACKAGED
from . import data

LIBRARIES = ("loomwork", "torch", "transformers", "peft", "trl", "accelerate", "safetensors", "tokenizers")
_WEIGHTS = (".safetensors", ".bin", ".gguf", ".pt")


def bare(base: str) -> str:
    """The name hf_load takes: ``hf:gemma-3-270m`` (as `loomwork models` prints it) or ``gemma-3-270m``."""
    return base[3:] if base.startswith("hf:") else base


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _sha256_cached(files: list[Path]) -> str:
    """sha256 over the files' names and contents, cached by their paths, sizes and times (hashing gigabytes of
    weights once is enough)."""
    stamp = json.dumps([[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files])
    cache = config.cache_dir() / "hashes" / (hashlib.sha256(stamp.encode()).hexdigest() + ".txt")
    if cache.exists():
        return cache.read_text().strip()
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + _sha256_file(f).encode() + b"\n")
    digest = h.hexdigest()
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(digest)
    return digest


def base_identity(base: str) -> dict:
    """A base model's identity: a packaged model by package, version and the sha256 of its GGUF file; a directory
    or GGUF file by its path and the sha256 of its weights and configuration."""
    if base in PACKAGED:
        m = PACKAGED[base]
        gguf = m.gguf_path()
        return {"name": base, "package": m.distribution, "version": m.version(), "upstream": m.upstream,
                "file": gguf.name, "sha256": _sha256_cached([gguf])}
    path = Path(base).expanduser().resolve()
    if path.is_file():
        return {"name": base, "path": str(path), "sha256": _sha256_cached([path])}
    files = sorted(f for f in path.iterdir() if f.is_file() and (f.suffix in _WEIGHTS or f.name == "config.json"))
    upstream = None
    try:
        upstream = json.loads((path / "config.json").read_text(encoding="utf-8")).get("_name_or_path") or None
    except (OSError, ValueError):
        pass
    return {"name": base, "path": str(path), "upstream": upstream if upstream and not Path(upstream).is_absolute()
            else None, "sha256": _sha256_cached(files)}


def libraries() -> dict:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def command() -> str:
    return shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else ""


def record(source: dict, rows: list[dict], train: list[dict], held: list[dict], dropped: int, base: str,
           seed: int, how: str) -> dict:
    """The provenance block of an adapter's (or a reward model's) record."""
    return {
        "data": {"source": source, "rows": len(rows), "sha256": data.digest(rows),
                 "train": {"rows": len(train), "prompts": len({r["prompt"] for r in train}),
                           "sha256": data.digest(train)},
                 "heldout": {"rows": len(held), "how": how, "sha256": data.digest(held),
                             "prompts": sorted({r["prompt"] for r in held})},
                 "dropped_for_sharing_with_heldout": dropped},
        "base_model": base_identity(base), "seed": seed, "libraries": libraries(), "command": command(),
        "host": {"platform": platform.platform(), "cpus": os.cpu_count()},
    }
