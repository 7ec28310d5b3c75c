"""Where loomwork keeps its data and caches. Every location can be moved by an environment variable."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

DEFAULT_MODEL = "hf:gemma-3-270m"


def home() -> Path:
    """LOOMWORK_HOME moves data and cache together (tests use a temporary one)."""
    env = os.environ.get("LOOMWORK_HOME")
    return Path(env) if env else Path(platformdirs.user_data_dir("loomwork"))


def cache_dir() -> Path:
    """Converted model weights live here. Kept apart from LOOMWORK_HOME so a fresh data home reuses conversions."""
    env = os.environ.get("LOOMWORK_CACHE")
    return Path(env) if env else Path(platformdirs.user_cache_dir("loomwork"))


def default_db_url() -> str:
    """LOOMWORK_DB may be a file path or any SQLAlchemy URL (``postgresql+psycopg://...``)."""
    env = os.environ.get("LOOMWORK_DB")
    if env:
        return env
    return str(home() / "loom.sqlite")


def default_model() -> str:
    return os.environ.get("LOOMWORK_MODEL") or DEFAULT_MODEL
