"""The fast-moving dependencies are bounded in pyproject.toml, and what a fresh install put here is inside those
bounds (a release beyond them is only admitted once the tests pass with it)."""

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
FAST = {"transformers", "accelerate", "peft", "trl", "datasets"}


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lines = list(project["dependencies"]) + [r for group in project["optional-dependencies"].values() for r in group]
    return [Requirement(line) for line in lines]


def test_fast_moving_dependencies_have_an_upper_bound_and_the_installed_ones_are_within():
    seen = set()
    for req in _requirements():
        if req.name not in FAST:
            continue
        seen.add(req.name)
        assert any(s.operator in ("<", "<=", "==", "~=") for s in req.specifier), f"{req} has no upper bound"
        installed = metadata.version(req.name)
        assert req.specifier.contains(installed, prereleases=True), f"{req.name} {installed} is outside {req}"
    assert seen == FAST


def test_torch_is_never_a_declared_dependency():
    """An unpinned torch pulls a multi-GB CUDA build: setup.sh pins the CPU build and nothing may ask for another."""
    assert not [r for r in _requirements() if re.fullmatch(r"torch(vision|audio)?", r.name)]
