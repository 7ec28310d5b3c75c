"""Model references (``backend:model``): checking them, the library's ``get_backend`` (the process's model pool,
pool.py) and the list of what is available. Backends are imported only when used, so that listing models or using
the mock never imports torch."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

from .. import config, validate
from ..errors import NotFound
from .base import Backend
from .catalog import PACKAGED
from .pool import PROCESS, PROVIDERS

def split_ref(ref: str) -> tuple[str, str]:
    """``"hf:gemma-3-270m"`` → ``("hf", "gemma-3-270m")``. A bare packaged name means hf; bare ``mock`` the mock.
    Checks the reference without loading anything (so a server can refuse a bad one at start)."""
    ref = validate.name(ref, "a model reference", 1000)
    backend, sep, model = ref.partition(":")
    if not sep:
        if ref in PACKAGED:
            return "hf", ref
        if ref == "mock":
            return "mock", "default"
        raise NotFound(f"unknown model {ref!r}: write backend:model, e.g. {config.DEFAULT_MODEL} "
                       "(see `loomwork models`)")
    if backend not in PROVIDERS:
        raise NotFound(f"unknown backend {backend!r} in {ref!r}: known backends are {', '.join(PROVIDERS)}")
    if not model:
        raise NotFound(f"{ref!r} names no model")
    if backend in ("openai", "openai-chat"):
        from .openai import parse_ref  # httpx only: cheap, and checks the address before anything uses it

        parse_ref(model)
    return backend, model


def check_weights(ref: str) -> None:
    """Refuse, in one line and before anything starts, a local model whose weights are not there (a typo in a
    packaged name, a missing file). Served and mock models are checked when first used."""
    backend, model = split_ref(ref)
    if model in PACKAGED:
        return  # known by name; whether it is installed, the first use says (with how to install it)
    if backend == "hf":
        from ..levers.adapter import split_model
        from .hf_load import resolve_source

        base = split_model(model)[0]
        if base not in PACKAGED:
            resolve_source(base)
    elif backend == "llama":
        from .llama import gguf_file

        gguf_file(model)


def same_weights(a: str, b: str) -> bool:
    """Whether two references run the same weights: equal, or one packaged model through hf: (converted from its
    GGUF) and llama: (the GGUF itself), whose residual streams a steering vector made with either fits."""
    if a == b:
        return True
    try:
        (ka, ma), (kb, mb) = split_ref(a), split_ref(b)
    except (NotFound, ValueError):
        return False
    return ma == mb and ma in PACKAGED and {ka, kb} <= {"hf", "llama"}


def get_backend(ref: str | None = None) -> Backend:
    """The model ``ref`` names (the default model when None), from the process's pool (pool.py)."""
    return PROCESS.get(ref)


def register(backend: Backend) -> None:
    """Make an already-built backend (a test's tiny model, say) available under its ref, in the process's pool."""
    PROCESS.register(backend)


async def close_all() -> None:
    await PROCESS.close()


@dataclass(frozen=True)
class ModelInfo:
    ref: str
    description: str
    installed: bool
    note: str = ""

    def to_json(self) -> dict:
        return {"ref": self.ref, "description": self.description, "installed": self.installed, "note": self.note}


def list_models() -> list[ModelInfo]:
    """Everything a model reference can name here, and whether it is ready to use."""
    torch_ok = not PROVIDERS["hf"].missing()
    out = [ModelInfo("mock:default", "deterministic toy model for tests and demos", True),
           ModelInfo("mock:slow", "the toy model, 50 ms per token (to watch streaming)", True)]
    for m in PACKAGED.values():
        note = "" if m.installed() else m.install
        if m.installed() and not torch_ok:
            note = "needs torch: ./setup.sh"
        elif m.installed():
            from .hf_load import converted_dir  # torch-free until a conversion is actually run

            try:
                note = "converted" if converted_dir(m.name) else "converts on first use"
            except Exception:  # an unassembled package: harmless for a listing
                note = "converts on first use"
        default = " [default]" if f"hf:{m.name}" == config.default_model() else ""
        out.append(ModelInfo(f"hf:{m.name}", m.description + default, m.installed() and torch_ok, note))
    from ..levers import adapter as adapters  # torch-free: reads the adapters' records

    peft_ok = torch_ok and importlib.util.find_spec("peft") is not None
    for a in adapters.list_adapters():
        se = f" ± {a['kl_se']:.3f}" if a.get("kl_se") is not None else ""
        kl = f", KL {a['kl_bits']:.3f}{se} bits/token" if a.get("kl_bits") is not None else ""
        out.append(ModelInfo(f"hf:{a['base']}+{a['name']}", f"LoRA adapter on {a['base']} ({a['config']['method']}"
                             f"{kl}; {a['status']})", peft_ok, "" if peft_ok else "needs peft: pip install 'loomwork[tune]'"))
    llama_ok = not PROVIDERS["llama"].missing()
    for m in PACKAGED.values():  # the same files through llama.cpp in process (no conversion)
        note = "" if llama_ok else "needs the extra 'llama': pip install 'loomwork[llama]' (compiles llama.cpp)"
        out.append(ModelInfo(f"llama:{m.name}", f"{m.description.split(',')[0]}, llama.cpp in process",
                             m.installed() and llama_ok, note if m.installed() else m.install))
    base = os.environ.get("LOOMWORK_OPENAI_BASE_URL") or os.environ.get("OPENAI_BASE_URL")
    out.append(ModelInfo("openai:URL#MODEL", "any OpenAI-compatible /v1/completions server", True,
                         f"base URL from environment: {base}" if base else "e.g. openai:http://127.0.0.1:8000/v1"))
    out.append(ModelInfo("openai-chat:URL#MODEL", "a chat model's /v1/chat/completions, the path as the assistant's "
                         "message continued", True, "system message: -o system TEXT"))
    return out


def cache_stats() -> list[dict]:
    """Each model the process loaded, with its prefix cache's figures (pool.py)."""
    return PROCESS.cache_stats()
