"""Import any supported file into a store, and export a tree in any supported format."""

from __future__ import annotations

import json
import re
import sys
from contextlib import contextmanager
from pathlib import Path

from .. import validate
from ..errors import InvalidInput, NotFound
from ..store import Store
from . import helm, logitloom, miniloom, native, native_import, others, pyloom
from .forest import Parsed, Report, loads, refuse_unstorable_strings, write
from .markdown import export_markdown

IMPORTERS = {
    "pyloom": pyloom.parse,
    "loomsidian": others.loomsidian,
    "exoloom": others.exoloom,
    "bonsai": others.bonsai,
    "logitloom": logitloom.parse,
    "helm": helm.parse,
    "miniloom": miniloom.parse,
    "loomwork": native_import.parse,
}
IMPORT_FORMATS = ("auto", *IMPORTERS, "jsonl")
EXPORT_FORMATS = ("json", "pyloom", "loomsidian", "logitloom", "helm", "miniloom", "markdown", "jsonl", "text")


MAX_DEPTH = 20_000  # nesting levels for nested formats (pyloom, loomwork JSON); real looms stay far below


@contextmanager
def _deep():
    """json recurses once per nesting level: allow deep trees, refuse absurd ones with one clear message."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, MAX_DEPTH + 1000))
    try:
        yield
    except RecursionError:
        raise InvalidInput(f"the tree is nested more than about {MAX_DEPTH:,} levels deep") from None
    finally:
        sys.setrecursionlimit(old)


def dumps(data, indent: int | None = None) -> str:
    with _deep():
        # indent=None keeps the C encoder: with any indent json falls back to pure Python (10x slower)
        return json.dumps(data, ensure_ascii=False, indent=indent) + "\n"


def detect(data) -> str:
    """The format of parsed JSON, by the fields each format is known for."""
    if isinstance(data, dict):
        if data.get("format") == "loomwork":
            return "loomwork"
        if "isLogitLoomTreeVersion" in data:
            return "logitloom"
        if miniloom.looks_like(data):
            return "miniloom"
        if data.get("loomType") == "Exoloom" or (isinstance(data.get("tree"), dict) and "lens" in data):
            return "exoloom"
        if isinstance(data.get("root"), dict) or ("text" in data and "children" in data):
            return "pyloom"
        nodes = data.get("nodes")
        if isinstance(nodes, dict) and ("current" in data or "hoisted" in data or
                                        any(isinstance(n, dict) and "parentId" in n for n in nodes.values())):
            return "loomsidian"
        if helm.looks_like(data):
            return "helm"
        if isinstance(nodes, list) and any(isinstance(n, dict) and ("childrenIds" in n or "parentIds" in n)
                                           for n in nodes):
            return "bonsai"
    if isinstance(data, list) and data and all(isinstance(n, dict) and "text" in n for n in data):
        return "pyloom"
    raise InvalidInput("cannot tell the format: it is JSON but matches none of pyloom, loomsidian, exoloom, "
                       "bonsai, logitloom, helm, miniloom or loomwork; name one with --format")


# JSON escapes that decode to what no database stores as text: a surrogate (valid only as a high-low pair) or NUL
_SUSPECT_ESCAPE = re.compile(r"\\u(?:[dD][89a-fA-F][0-9a-fA-F]{2}|0000)")


def parse_text(text: str, fmt: str = "auto", name: str = "input") -> Parsed:
    if fmt not in IMPORT_FORMATS:
        raise InvalidInput(f"unknown import format {fmt!r}: use one of {', '.join(IMPORT_FORMATS)}")
    validate.unicode_ok(text, name)  # raw NUL or surrogates (from a caller that decoded with surrogateescape)
    if fmt == "jsonl" or (fmt == "auto" and name.endswith(".jsonl")):
        return others.jsonl(text)
    try:
        with _deep():
            data = loads(text)
    except ValueError as exc:
        lines = [line for line in text.splitlines() if line.strip()]
        if fmt == "auto" and len(lines) > 1 and all(line.lstrip().startswith("{") for line in lines):
            return others.jsonl(text)
        raise InvalidInput(f"{name} is not valid JSON: {exc}") from None
    if _SUSPECT_ESCAPE.search(text) and not (fmt == "miniloom" or (fmt == "auto" and miniloom.looks_like(data))):
        # (a MiniLoom patch may split a surrogate pair, as JavaScript counts: its importer checks what it keeps)
        refuse_unstorable_strings(data, name)
    return IMPORTERS[detect(data) if fmt == "auto" else fmt](data)


def import_file(store: Store, path: str | Path, fmt: str = "auto", under: str | None = None) -> Report:
    """Import a file as new trees (one per root) or under node ``under``, in one transaction."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark some editors write is not content
    except FileNotFoundError:
        raise NotFound(f"no file {path}") from None
    except (UnicodeDecodeError, IsADirectoryError) as exc:
        raise InvalidInput(f"cannot read {path} as UTF-8 text: {exc}") from None
    return write(store, parse_text(text, fmt, str(path)), under)


def export(store: Store, tree_id: str, fmt: str, node_id: str | None = None) -> str:
    """The tree (or, for markdown and text, the path to ``node_id``) in format ``fmt``, as text."""
    if fmt == "json":
        return dumps(native.tree_json(store, tree_id))
    if fmt == "pyloom":
        return dumps(pyloom.export(store, tree_id))
    if fmt == "loomsidian":
        return dumps(others.export_loomsidian(store, tree_id))
    if fmt == "logitloom":
        return dumps(logitloom.export(store, tree_id))
    if fmt == "helm":
        return dumps(helm.export(store, tree_id), indent=2)  # as Helm writes it
    if fmt == "miniloom":
        return dumps(miniloom.export(store, tree_id))
    if fmt == "jsonl":
        return others.export_jsonl(store, tree_id)
    if fmt == "markdown":
        return export_markdown(store, tree_id, node_id)
    if fmt == "text":
        return native.path_or_leaves_text(store, tree_id, node_id)
    raise InvalidInput(f"unknown export format {fmt!r}: use one of {', '.join(EXPORT_FORMATS)}")
