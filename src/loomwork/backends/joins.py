"""Scoring text that joins the text before it inside a token: what to compute, without any model.

A person's text B after a context C is scored as the probability that the model's text, after C, starts with B:

    log P(B | C) = log P̂(C + B) - log P̂(C)

Both are read on one tokenisation, the canonical tokenisation of the whole ``C + B`` (how the model reads the
path). P̂ of a string that ends inside a token is the probability of the tokens before that token times the
probability that the next token *starts with* the leftover text; the string ``C + B`` itself ends inside its last
token in that sense (the text may go on: " cat" is the start of " cats"). So, with tokens t_1 … t_k of C + B,
``a`` the first token that ends after C, r the part of t_a inside C and s the text of t_k:

    log P(B | C) = Σ_{a ≤ j < k} log p(t_j | t_<j)  +  log M_k(s)  -  log M_a(r)

where M_j(x) = Σ over tokens v whose text starts with x of p(v | t_<j) (M_a(r) = 1 when C ends between tokens,
and when a = k the two M are at the same position). Scoring the continuation tokenised on its own after the
context's tokens (the old way) reads a token path the model almost never produces (measured: 8 to 39 bits too
many). Known approximation: a string is only counted along its canonical tokens (other token paths to the same
text are left out, as every scorer of this kind does).

This module plans the terms; a backend evaluates each as log Σ p over its candidate tokens at its position.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from ..tree import Token


@dataclass(frozen=True)
class Term:
    """sign × log Σ_{v in candidates} p(v | ids[:position]); ``text`` is the part of the scored text it covers."""

    position: int  # index of the token being predicted (the model's logits at position - 1)
    candidates: tuple[int, ...] | int  # one token id, or every id whose text starts with something
    sign: int
    text: str


class PieceIndex:
    """Token ids by the text they decode to in mid-sentence, for "tokens that start with x" queries."""

    def __init__(self, pieces: list[str | None]):
        # None: a control token or a piece that is not whole characters; it never starts a text
        self.pieces = pieces
        order = sorted((p, i) for i, p in enumerate(pieces) if p)
        self._sorted = [p for p, _ in order]
        self._ids = [i for _, i in order]
        self._memo: dict[str, tuple[int, ...]] = {}

    def starting_with(self, text: str) -> tuple[int, ...]:
        """Every token id whose text starts with ``text`` (a binary search in the sorted pieces)."""
        hit = self._memo.get(text)
        if hit is None:
            lo = bisect.bisect_left(self._sorted, text)
            hi = lo
            while hi < len(self._sorted) and self._sorted[hi].startswith(text):
                hi += 1
            hit = self._memo[text] = tuple(sorted(self._ids[lo:hi]))
            if len(self._memo) > 4096:
                self._memo.clear()
        return hit


def plan(text: str, ids: list[int], offsets: list[tuple[int, int]], start: int, index: PieceIndex,
         first_scored: int = 1) -> list[Term]:
    """The terms of log P(text[start:] | text[:start]) on ``ids``, the canonical tokenisation of ``text`` (with
    ``offsets`` as the tokenizer gives them; tokens before ``first_scored``, such as a start token, are never
    scored). Empty when text[start:] is empty. Where no token's text starts with the text wanted (a piece of a
    character split into bytes), the token itself stands for it."""
    end = len(text)
    if start >= end or first_scored >= len(ids):
        return []
    k = len(ids) - 1
    a = next((j for j in range(first_scored, len(ids)) if offsets[j][1] > start), k)
    terms: list[Term] = []
    covered = start  # bytes of one character share its offsets: each piece of text goes to one term
    for j in range(a, len(ids)):
        hi = offsets[j][1] if j < k else end
        piece = text[covered:hi] if hi > covered else ""
        covered = max(covered, hi)
        if j == k:  # the text may go on: any token that starts with the last token's text
            whole = text[offsets[j][0]:end]
            terms.append(Term(j, (index.starting_with(whole) if whole else ()) or ids[j], 1, piece))
        else:
            terms.append(Term(j, ids[j], 1, piece))
    if offsets[a][0] < start:  # the context ends inside token a: given that the next token starts with its part
        terms.append(Term(a, index.starting_with(text[offsets[a][0]:start]) or ids[a], -1, ""))
    return terms


def shared_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def tokens_of(terms: list[Term], values: list[float], tops: list[tuple] | None = None) -> list[Token]:
    """Token records for the scored text: one per term that covers text, logprobs summing to the whole score.
    The correction for a token straddling the join goes to the first record; a term that covers no text (a
    byte of a character already covered) adds to the next record."""
    neg = sum(t.sign * v for t, v in zip(terms, values) if t.sign < 0)
    out: list[Token] = []
    carry = neg
    for n, (term, v) in enumerate(zip(terms, values)):
        if term.sign < 0:
            continue
        carry += v
        if not term.text:
            continue
        top = tops[n] if tops else ()
        out.append(Token(term.text, carry, top, id=term.candidates if isinstance(term.candidates, int) else None))
        carry = 0.0
    if carry and out:
        last = out[-1]
        out[-1] = Token(last.text, last.logprob + carry, last.top, id=last.id)
    return out
