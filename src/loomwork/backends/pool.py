"""Model pools: the models an owner (the web app, the CLI, a library user) has loaded, and who may use which.

Loading a model takes seconds and sampling from it milliseconds, so loaded models are kept; the weights are the
process's (two pools never load one model twice: they share what is loaded). What a pool adds is its owner's
policy: ``get(ref, principal)`` is the one place where a model is allowed or refused for whoever asks (a shared
server offers only some models; accounts and quotas will be decided here too). ``PROCESS`` is the pool of the
library and the CLI, with no policy; a server makes its own with ``PROCESS.with_policy(...)`` and passes it to the
capabilities that load models by name (judge graders, the ledger's model lever, the tuning report).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
import threading
from dataclasses import dataclass
from typing import Any, Callable

from .. import config
from ..errors import BackendError, InvalidInput, NotFound
from .base import Backend

@dataclass(frozen=True)
class Provider:
    """A kind of model by the name its references start with: where its class lives, what it needs installed (its
    modules, found without importing them) and how to install it (inspect_ai's providers, in small)."""

    name: str
    module: str
    cls: str
    requires: tuple[str, ...] = ()
    install: str = ""

    def missing(self) -> list[str]:
        return [m for m in self.requires if importlib.util.find_spec(m) is None]

    def check(self) -> None:
        """One clear error, before anything is imported, when what it needs is not installed."""
        if self.missing():
            raise BackendError(f"{self.name}: models need {', '.join(self.missing())}: {self.install}")

    def factory(self):
        self.check()
        return getattr(importlib.import_module(self.module), self.cls)


PROVIDERS = {p.name: p for p in (
    Provider("mock", "loomwork.backends.mock", "MockBackend"),
    Provider("hf", "loomwork.backends.hf", "HFBackend", ("torch", "transformers"),
             "run ./setup.sh, or pip install torch==2.13.0 'loomwork[hf]'"),
    Provider("openai", "loomwork.backends.openai", "OpenAIBackend", ("httpx",), "pip install httpx"),
    Provider("openai-chat", "loomwork.backends.openai_chat", "OpenAIChatBackend", ("httpx",), "pip install httpx"),
    Provider("llama", "loomwork.backends.llama", "LlamaBackend", ("llama_cpp",),
             "pip install 'loomwork[llama]' (the optional extra 'llama': it compiles llama.cpp)"),
)}

# policy(ref, principal) -> the ref to use, or raises (InvalidInput, NotFound) to refuse
Policy = Callable[[str, Any], str]


class _Loaded:
    """The process's loaded models. One load at a time: two requests naming the same model at once would load it
    twice, and transformers' loading is not thread-safe (a server once loaded Gemma twice concurrently and got an
    untied, uninitialised lm_head)."""

    def __init__(self):
        self.models: dict[str, Backend] = {}
        self.loading = threading.Lock()

    def get(self, backend: str, model: str) -> Backend:
        key = f"{backend}:{model}"
        if key in self.models:
            return self.models[key]
        with self.loading:
            if key not in self.models:  # another thread may have loaded it while this one waited
                factory = PROVIDERS[backend].factory()
                try:
                    self.models[key] = factory(model)
                except ValueError:
                    raise NotFound(f"unknown {backend} model {model!r} (see `loomwork models`)") from None
        return self.models[key]


class ModelPool:
    def __init__(self, policy: Policy | None = None, *, default: str | None = None, loaded: _Loaded | None = None):
        self.policy = policy
        self._default = default
        self._loaded = loaded if loaded is not None else _Loaded()

    def with_policy(self, policy: Policy | None, default: str | None = None) -> "ModelPool":
        """A pool sharing these loaded models, deciding access by ``policy`` (``default``: the model a request that
        names none gets)."""
        return ModelPool(policy, default=default, loaded=self._loaded)

    @property
    def default(self) -> str:
        return self._default or config.default_model()

    def allowed(self, ref: str | None = None, principal: Any = None) -> str:
        """The reference ``principal`` may use for ``ref`` (the default model when None), or one clear error."""
        from .registry import split_ref

        from_env = self._from_env(ref)
        ref = ref or self.default
        try:
            split_ref(ref)  # a malformed or unknown reference is refused before any policy looks at it
        except (NotFound, InvalidInput) as exc:
            if from_env:  # say where the bad name came from
                raise type(exc)(f"LOOMWORK_MODEL: {exc}") from None
            raise
        return self.policy(ref, principal) if self.policy is not None else ref

    def _from_env(self, ref: str | None) -> bool:
        return not ref and not self._default and bool(os.environ.get("LOOMWORK_MODEL"))

    def get(self, ref: str | None = None, principal: Any = None) -> Backend:
        from .registry import split_ref

        resolved = self.allowed(ref, principal)
        try:
            return self._loaded.get(*split_ref(resolved))
        except (NotFound, InvalidInput) as exc:
            if self._from_env(ref):  # a well-formed name of nothing there: say where it came from
                raise type(exc)(f"LOOMWORK_MODEL={resolved}: {exc}") from None
            raise

    async def aget(self, ref: str | None = None, principal: Any = None) -> Backend:
        """``get`` off the event loop (a first load takes seconds)."""
        ref = self.allowed(ref, principal)  # refused at once, before a thread is taken
        return await asyncio.to_thread(self.get, ref, principal)

    def register(self, backend: Backend) -> None:
        """Make an already-built backend (a test's tiny model, say) available under its ref."""
        self._loaded.models[backend.ref] = backend

    def loaded(self) -> dict[str, Backend]:
        return dict(self._loaded.models)

    def cache_stats(self) -> list[dict]:
        """Each loaded model's prefix cache (see kv_cache.py): ``{"model": ref, "cache": figures or None}``."""
        return [{"model": ref, "cache": b.cache_stats()} for ref, b in sorted(self._loaded.models.items())]

    async def close(self) -> None:
        """Close and forget every loaded model (of every pool sharing them: the process is done with them)."""
        for b in list(self._loaded.models.values()):
            await b.close()
        self._loaded.models.clear()


PROCESS = ModelPool()
