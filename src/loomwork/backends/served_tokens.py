"""A served model's tokens as its server sends them, made into loomwork's token records: either shape of
``logprobs`` (the completions API's, or the chat API's ``content`` list with bytes and ids), bytes or text joined
into whole characters (a character split across tokens is one record, never U+FFFD), the alternatives asked for,
and the decoding lever's KL where the returned alternatives determine it (served.py). Used by openai.py."""

from __future__ import annotations

from ..tree import Token
from . import served
from .base import ByteText, SamplingParams, merged_token


def records(choice: dict) -> list[tuple[str, bytes | None, float | None, tuple, int | None]]:
    """(text, bytes or None, logprob, alternatives descending, id) of each token of a choice, from either shape of
    ``logprobs``: the completions API's (tokens, token_logprobs, top_logprobs) or the chat API's ``content`` list,
    which llama-server also uses for completions and which carries each token's bytes and id."""
    lp = choice.get("logprobs") or {}
    if isinstance(lp.get("content"), list):
        out = []
        for e in lp["content"]:
            if not isinstance(e, dict):
                continue
            raw = e.get("bytes")
            tops = sorted(((str(a.get("token", "")), float(a["logprob"])) for a in e.get("top_logprobs") or []
                           if isinstance(a, dict) and a.get("logprob") is not None), key=lambda x: -x[1])
            out.append((str(e.get("token", "")), bytes(raw) if isinstance(raw, list) else None,
                        None if e.get("logprob") is None else float(e["logprob"]), tuple(tops), e.get("id")))
        return out
    toks = lp.get("tokens") or []
    lps = lp.get("token_logprobs") or [None] * len(toks)
    tops = lp.get("top_logprobs") or [None] * len(toks)
    return [(str(text), None, None if logprob is None else float(logprob),
             tuple(sorted(((str(a), float(b)) for a, b in (top or {}).items()), key=lambda x: -x[1])), None)
            for text, logprob, top in zip(toks, lps, tops)]


def plain_tokens(choice: dict) -> list[Token]:
    """A choice's tokens as the server names them (scoring and next-token, where offsets place them)."""
    return [Token(text, logprob, top, id=tid) for text, _, logprob, top, tid in records(choice)]


def tile(held: list[tuple], text: str) -> list[Token]:
    """Tokens ``held`` as (id, logprob, top, figures, text) laid over ``text`` from its start: a whole token where
    its text comes next; tokens whose text holds part of a character (U+FFFD) or none merged into one record,
    covering the text up to where the next whole token's text is found."""
    out, at, group = [], 0, []
    for rec in held:
        piece = rec[4]
        if not piece or "\ufffd" in piece:
            group.append(rec)
            continue
        if group:
            end = text.find(piece, at + 1)
            if end < 0:
                group.append(rec)
                continue
            out.append(merged_token(text[at:end], [g[:4] for g in group]))
            at, group = end, []
        if text.startswith(piece, at):
            out.append(merged_token(piece, [rec[:4]]))
            at += len(piece)
        else:
            group.append(rec)
    if group:
        out.append(merged_token(text[at:], [g[:4] for g in group]))
    return out


class Sample:
    """One sample's tokens as they arrive: whole characters (a token's bytes where the server sends them; else its
    text, with tokens that hold part of a character merged until the server's text shows the whole of it), the
    alternatives asked for, and the decoding lever's KL where the returned alternatives determine it."""

    def __init__(self, kind: str, params: SamplingParams, asked: int):
        self.kind, self.params, self.asked = kind, params, asked
        self.bytes = ByteText()
        self.held: list[tuple] = []  # (id, logprob, top, figures) of tokens waiting for their text
        self.held_text = ""
        self.unknown = False  # some position's decoding KL could not be recovered

    def _figures(self, logprob: float | None, top: tuple) -> dict:
        kl = served.decode_kl(self.kind, self.params, logprob, [x for _, x in top[: self.asked]])
        self.unknown |= kl is None
        return {"decode_kl": kl}

    def push(self, choice: dict) -> list[Token]:
        recs = records(choice)
        if not recs:  # a server that returns no logprobs: the text, without figures
            if not choice.get("text"):
                return []  # a chunk that only finishes the sample
            self.unknown = True
            return [Token(choice["text"])]
        out = []
        for text, raw, logprob, top, tid in recs:
            figures = self._figures(logprob, top)
            top = top[: self.params.logprobs]
            if raw is not None:
                tok = self.bytes.push(tid, raw, logprob, top, figures)
                if tok is not None:
                    out.append(tok)
                continue
            self.held.append((tid, logprob, top, figures, text))
        self.held_text += choice.get("text") or ""
        return out + self._tiled()

    def _tiled(self, final: bool = False) -> list[Token]:
        out = []
        while self.held:  # tokens whose text is whole and is what the server's text says next
            text = self.held[0][4]
            if "\ufffd" in text or not self.held_text.startswith(text):
                break
            out.append(merged_token(text, [self.held.pop(0)[:4]]))
            self.held_text = self.held_text[len(text):]
        if self.held and (final or "\ufffd" not in self.held[-1][4]):
            # a character split across tokens: one record for them all, with the text the server decoded
            out.append(merged_token(self.held_text, [h[:4] for h in self.held]))
            self.held, self.held_text = [], ""
        return out

    def flush(self) -> list[Token]:
        return self.bytes.flush() + self._tiled(final=True)
