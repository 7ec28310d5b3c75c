"""Probe suites: built-in ones (suites/*.json) and users' own JSON or YAML files (schema in docs/lens.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from ..errors import InvalidInput, NotFound

BUILTIN = files("loomwork.lens") / "suites"


@dataclass
class Probe:
    id: str
    prompt: str
    answers: list[str]
    terminators: list[str]


@dataclass
class Generation:
    id: str
    prompt: str
    max_tokens: int = 48


@dataclass
class Suite:
    name: str
    description: str = ""
    probes: list[Probe] = field(default_factory=list)
    generations: list[Generation] = field(default_factory=list)


def builtin_names() -> list[str]:
    return sorted(p.name.removesuffix(".json") for p in BUILTIN.iterdir() if p.name.endswith(".json"))


def _err(where: str, msg: str):
    raise InvalidInput(f"{where}: {msg}")


def _answers(raw, fmt: str, where: str) -> list[str]:
    if isinstance(raw, dict) and set(raw) == {"integers"}:
        lo_hi = raw["integers"]
        if not (isinstance(lo_hi, list) and len(lo_hi) == 2 and all(isinstance(x, int) for x in lo_hi)) or lo_hi[0] > lo_hi[1]:
            _err(where, "'answers.integers' must be [low, high] with low <= high")
        values = [str(i) for i in range(lo_hi[0], lo_hi[1] + 1)]
    elif isinstance(raw, list) and raw and all(isinstance(a, str) and a for a in raw):
        values = raw
    else:
        _err(where, "'answers' must be a non-empty list of non-empty strings or {\"integers\": [low, high]}")
    if "{}" not in fmt:
        _err(where, "'format' must contain {} (where the answer goes)")
    return [fmt.replace("{}", v) for v in values]


def parse(data, source: str) -> Suite:
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        _err(source, "a suite is an object with a 'name'")
    probes, gens = [], []
    for i, p in enumerate(data.get("probes") or []):
        where = f"{source}: probes[{i}]"
        if not isinstance(p, dict) or not isinstance(p.get("prompt"), str) or not p["prompt"]:
            _err(where, "a probe needs a non-empty 'prompt'")
        terms = p.get("terminators", ["\n"])
        if isinstance(terms, str):
            terms = [terms]
        if not isinstance(terms, list) or not terms or not all(isinstance(t, str) and t for t in terms):
            _err(where, "'terminators' must be a non-empty list of strings (\"<eos>\" for the end of text)")
        probes.append(Probe(str(p.get("id", i)), p["prompt"], _answers(p.get("answers"), p.get("format", "{}"), where),
                            terms))
    for i, g in enumerate(data.get("generations") or []):
        where = f"{source}: generations[{i}]"
        if not isinstance(g, dict) or not isinstance(g.get("prompt"), str) or not g["prompt"]:
            _err(where, "a generation needs a non-empty 'prompt'")
        mt = g.get("max_tokens", 48)
        if not isinstance(mt, int) or not 1 <= mt <= 1024:
            _err(where, "'max_tokens' must be an integer from 1 to 1024")
        gens.append(Generation(str(g.get("id", i)), g["prompt"], mt))
    if not probes and not gens:
        _err(source, "a suite needs at least one probe or generation")
    return Suite(data["name"], str(data.get("description", "")), probes, gens)


def load(ref: str) -> Suite:
    """A built-in suite by name, or a JSON / YAML file."""
    if ref in builtin_names():
        return parse(json.loads((BUILTIN / f"{ref}.json").read_text()), ref)
    path = Path(ref)
    if not path.is_file():
        raise NotFound(f"no suite {ref!r}: use a file or one of {', '.join(builtin_names())}")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # JSON and YAML errors alike: one message naming the file
        raise InvalidInput(f"{path}: not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'JSON'}: {exc}") from None
    return parse(data, str(path))
