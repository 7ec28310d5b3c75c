"""Plain tree values: Token, Node, Tree, Generation. No I/O here; every layer passes these around.

A node holds only its own text segment; the full text of a node is the concatenation of the segments on its path
from the root. Token records, when present, tile the node's text exactly: ``"".join(t.text for t in tokens)``
equals ``node.text``.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Iterable, Sequence

# unknown: imported from a file that does not say who wrote the node (pyloom's older nodes, loomsidian, bonsai);
# the optimization accounting counts nothing for such a node rather than guess
ORIGINS = ("prompt", "human", "model", "edit", "unknown")
LEDGER_FIELDS = ("base_logprob", "decode_kl", "steer_kl")
_ID_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # no l/o/0/1: ids are read aloud and typed


def _finite(x) -> float | None:
    """A stored per-token figure, or None for anything that is not a finite number (a hand-edited file)."""
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and x == x and abs(x) != float("inf") else None


def new_id(length: int = 10) -> str:
    # 32 symbols: each random byte's low 5 bits pick one uniformly (one urandom call, not one per character)
    return "".join(_ID_ALPHABET[b & 31] for b in secrets.token_bytes(length))


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Token:
    """One model token inside a node.

    ``logprob`` is the model's raw natural-log probability of this token (before temperature or truncation), so
    that it equals what teacher-forced scoring of the same text gives. ``top`` holds the k most likely
    alternatives at this position as ``(text, logprob)`` pairs. ``cont`` marks a record that continues the
    previous record's token: it appears only when a node was split inside a token, and merging rejoins it.

    The optimization ledger's per-token figures (natural log; None where unknown): ``base_logprob`` is the
    logprob the *unsteered* model gave this token when steering was applied; ``decode_kl`` is KL(sampling
    distribution ‖ model distribution) at this position (what temperature and truncation did); ``steer_kl`` is
    KL(steered ‖ unsteered next-token distribution). A ``cont`` record repeats its token's figures: count them once.
    """

    text: str
    logprob: float | None = None
    top: tuple[tuple[str, float], ...] = ()
    id: int | None = None
    cont: bool = False
    base_logprob: float | None = None
    decode_kl: float | None = None
    steer_kl: float | None = None

    def to_json(self) -> dict:
        d: dict = {"text": self.text, "logprob": self.logprob, "top": [list(t) for t in self.top]}
        if self.id is not None:
            d["id"] = self.id
        if self.cont:
            d["cont"] = True
        for name in LEDGER_FIELDS:
            if getattr(self, name) is not None:
                d[name] = getattr(self, name)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Token":
        return cls(
            text=d["text"],
            logprob=d.get("logprob"),
            # a pair without a number (written by an older import) is skipped, not a reason to fail the whole read
            top=tuple((str(a), float(b)) for a, b in d.get("top") or () if isinstance(b, (int, float))),
            id=d.get("id"),
            cont=bool(d.get("cont", False)),
            **{name: _finite(d.get(name)) for name in LEDGER_FIELDS},
        )


@dataclass(frozen=True)
class Node:
    id: str
    tree_id: str
    parent_id: str | None
    text: str
    origin: str
    tokens: tuple[Token, ...] = ()
    generation_id: str | None = None
    sample_index: int | None = None
    source_id: str | None = None  # the node an edit was copied from
    bookmarked: bool = False
    archived: bool = False
    tags: tuple[str, ...] = ()
    meta: dict = field(default_factory=dict, compare=False)
    created_at: datetime = field(default_factory=utcnow, compare=False)
    author: str | None = field(default=None, compare=False)  # whose operation made it (the store sets it)

    @property
    def is_root(self) -> bool:
        return self.parent_id is None

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "tree_id": self.tree_id,
            "parent_id": self.parent_id,
            "text": self.text,
            "origin": self.origin,
            "tokens": [t.to_json() for t in self.tokens],
            "generation_id": self.generation_id,
            "sample_index": self.sample_index,
            "source_id": self.source_id,
            "bookmarked": self.bookmarked,
            "archived": self.archived,
            "tags": list(self.tags),
            "meta": self.meta,
            "created_at": self.created_at.isoformat(),
            "author": self.author,
        }


@dataclass(frozen=True)
class Tree:
    id: str
    root_id: str
    title: str
    created_at: datetime = field(default_factory=utcnow, compare=False)
    meta: dict = field(default_factory=dict, compare=False)  # e.g. an imported file's tree-level settings

    def to_json(self) -> dict:
        return {"id": self.id, "root_id": self.root_id, "title": self.title, "created_at": self.created_at.isoformat()}


@dataclass(frozen=True)
class Generation:
    """One expand call: which model, with what parameters, how long it took and how many tokens it used."""

    id: str
    tree_id: str
    node_id: str  # the node that was expanded
    backend: str
    model: str
    params: dict
    seed: int | None
    duration_s: float
    prompt_tokens: int
    completion_tokens: int
    created_at: datetime = field(default_factory=utcnow, compare=False)

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "tree_id": self.tree_id,
            "node_id": self.node_id,
            "backend": self.backend,
            "model": self.model,
            "params": self.params,
            "seed": self.seed,
            "duration_s": self.duration_s,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "created_at": self.created_at.isoformat(),
        }


def path_text(path: Iterable[Node]) -> str:
    return "".join(n.text for n in path)


def tokens_text(tokens: Sequence[Token]) -> str:
    return "".join(t.text for t in tokens)


def split_tokens(tokens: Sequence[Token], offset: int) -> tuple[tuple[Token, ...], tuple[Token, ...]]:
    """Split token records at a character offset of their joined text.

    A token that straddles the offset becomes two records; the second is marked ``cont`` so that
    :func:`join_tokens` restores the original exactly.
    """
    head: list[Token] = []
    tail: list[Token] = []
    pos = 0
    for tok in tokens:
        end = pos + len(tok.text)
        if end <= offset:
            head.append(tok)
        elif pos >= offset:
            tail.append(tok)
        else:
            cut = offset - pos
            head.append(replace(tok, text=tok.text[:cut]))
            tail.append(replace(tok, text=tok.text[cut:], cont=True))
        pos = end
    return tuple(head), tuple(tail)


def join_tokens(head: Sequence[Token], tail: Sequence[Token]) -> tuple[Token, ...]:
    """Inverse of :func:`split_tokens`: concatenate, rejoining a token that a split cut in two."""
    if head and tail and tail[0].cont:
        first = tail[0]
        joined = replace(head[-1], text=head[-1].text + first.text)
        return (*head[:-1], joined, *tail[1:])
    return (*head, *tail)


TITLE_CHARS = 48  # a tree's automatic title: what fits in the page's header and a `trees` line
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s")
_DECORATION = re.compile(r"^(?:\s|#{1,6}\s|>|[*•+-]\s|\d+[.)]\s)+")  # headings, quotes, bullets, numbers
_CLOSING_HASHES = re.compile(r"\s#+$")
_MARKUP = [(re.compile(r"!?\[([^\]]*)\]\([^)]*\)"), r"\1"),  # [text](url) -> text
           (re.compile(r"(\*\*|\*|`)(\S(?:.*?\S)?)\1"), r"\2")]  # **bold**, *em*, `code` (not _: snake_case)
_NOT_TEXT = re.compile(r"^(?:```|~~~|---+$|\+\+\++$|<[^>]+>$)")  # code fences, front matter, a lone tag


def _plain(line: str) -> str:
    line = _CLOSING_HASHES.sub("", _DECORATION.sub("", line)).strip()
    for pattern, keep in _MARKUP:
        line = pattern.sub(keep, line)
    return line


def short_title(text: str) -> str:
    """A tree's automatic title from its prompt: the first line with words, as plain text (no markdown heading,
    quote, bullet, emphasis, code or link markup; code fences and front-matter rules skipped); if that is too
    long, its first sentence; cut at a word boundary to TITLE_CHARS with "…"
    ("" for no words)."""
    front = re.match(r"---[ \t]*\n.*?\n---[ \t]*(\n|$)", text, re.S)  # YAML front matter is no title
    text = text[front.end():] if front else text
    line = next((ln for ln in (_plain(raw) for raw in text.splitlines() if not _NOT_TEXT.match(raw.strip())) if ln), "")
    line = " ".join(line.split())
    end = _SENTENCE_END.search(line) if len(line) > TITLE_CHARS else None
    if end and end.start() >= 12:  # "Dr. Who" ends no sentence
        line = line[:end.start()].rstrip()
    if len(line) <= TITLE_CHARS:
        return line
    cut = line[:TITLE_CHARS - 1]
    if " " in cut[TITLE_CHARS // 2:]:
        cut = cut[:cut.rindex(" ")]
    return cut.rstrip(" ,;:–—-") + "…"
