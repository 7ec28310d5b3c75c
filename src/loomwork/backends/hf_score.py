"""Scoring with a transformers model (mixed into HFBackend): given text, next-token views, answer sets.

Every score of text after a context follows joins.py: the whole text is read in its canonical tokenisation, a
token that straddles the join counts only for what lies after it, and the scored text may go on after its last
token. Call these from a worker thread (they hold the model lock).
"""

from __future__ import annotations

import copy
import math
import threading
from collections import defaultdict

from ..errors import InvalidInput
from ..tree import Token
from .joins import PieceIndex, Term, plan, shared_prefix, tokens_of

SCORE_CHUNK = 128  # tokens per forward pass when scoring in the background (logits: 128 × vocab floats)


class HFScoring:
    """Needs from the backend: engine (engine/torch_engine.py: states, prefill, forward), torch, tok, _model_thread,
    _check_length, _tops, eos_ids, _banned, _anchor."""

    _piece_index: PieceIndex | None = None

    # -- pieces --------------------------------------------------------------------------------------------------

    def start_pieces(self) -> None:  # the mixin's own state; HFBackend.__init__ calls it
        """Build the piece index in the background (1-2 s for Gemma's 262k tokens), so that the first score after
        a model loads does not wait for it."""
        self._pieces_lock = threading.Lock()
        self._candidate_tensors: dict = {}  # candidate id tuples -> index tensors (answer sets repeat them)
        threading.Thread(target=self.pieces, name="loomwork-pieces", daemon=True).start()

    def pieces(self) -> PieceIndex:
        """Every token's text in mid-sentence (control tokens and pieces of characters left out), built once."""
        with self._pieces_lock:
            if self._piece_index is None:
                self._piece_index = self._build_pieces()
        return self._piece_index

    def _build_pieces(self) -> PieceIndex:
        anchor = self.tok.decode(self._anchor, skip_special_tokens=False)
        n = len(self.tok)
        texts = self.tok.batch_decode([self._anchor + [i] for i in range(n)], skip_special_tokens=False)
        special = set(self._banned.tolist() if self._banned is not None else ()) | set(self.eos_ids)
        special |= set(self.tok.all_special_ids)
        pieces: list[str | None] = []
        for i, t in enumerate(texts):
            p = t[len(anchor):] if t.startswith(anchor) else None
            pieces.append(None if i in special or not p or "\ufffd" in p else p)
        vocab = self.engine.lm.get_output_embeddings().weight.shape[0]
        return PieceIndex(pieces + [None] * max(0, vocab - n))

    def _encode(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        enc = self.tok(text, add_special_tokens=True, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]

    def _continuation_ids(self, prefix: str, continuation: str) -> tuple[list[int], list[int]]:
        """Token ids of the prefix, and of the continuation as the model reads the whole text where the prefix's
        tokens stay whole (else tokenised on its own: for reading back sampled tokens, not for scoring)."""
        pre = self.encode(prefix)
        full = self.encode(prefix + continuation)
        if full[: len(pre)] == pre:
            return pre, full[len(pre):]
        return pre, self.tok.encode(continuation, add_special_tokens=False)

    def _first_scored(self, ids: list[int]) -> int:
        return 1 if ids and ids[0] == self.tok.bos_token_id else 0

    def _plan(self, text: str, start: int) -> tuple[list[int], list[Term]]:
        ids, offsets = self._encode(text)
        return ids, plan(text, ids, offsets, start, self.pieces(), self._first_scored(ids))

    def _value(self, row, lse, candidates) -> float:
        """log Σ p over the candidates, from one row of logits and its log-normaliser."""
        if isinstance(candidates, int):
            return float(row[candidates] - lse)
        index = self._candidate_tensors.get(candidates)
        if index is None:
            if len(self._candidate_tensors) > 256:
                self._candidate_tensors.clear()
            index = self._candidate_tensors[candidates] = self.engine.tensor(candidates)
        return float(self.torch.logsumexp(row[index], 0) - lse)

    # -- text after a context ------------------------------------------------------------------------------------

    def _score(self, prefix: str, continuation: str, top: int) -> list[Token]:
        torch = self.torch
        full = prefix + continuation
        ids, terms = self._plan(full, len(prefix))
        if not terms:
            return []
        self._check_length(len(ids))
        first = min(t.position for t in terms) - 1
        feed = max(t.position for t in terms)
        with self._model_thread.urgent(), torch.inference_mode():
            logits = self.engine.prefill(ids[:feed], first)[1]
        values, tops = [], []
        for t in terms:
            row = logits[t.position - 1 - first]
            lse = torch.logsumexp(row, -1)
            values.append(self._value(row, lse, t.candidates))
            tops.append(self._tops((row - lse)[None], top)[0] if t.sign > 0 else ())
        return tokens_of(terms, values, tops)

    def _score_segments(self, segments: list[str], wanted: list[int], cancel) -> dict[int, list[Token]]:
        """One pass over the whole text, tokenised as a whole (how the model reads it), in chunks of SCORE_CHUNK
        tokens with the KV cache carried over, at background priority: a generation waits at most one chunk.
        Each segment is scored as joins.py says, on the tokenisation of the text up to its end; where that differs
        from the whole text's (near the segment's end), the few tokens that differ are read after the pass."""
        torch = self.torch
        text = "".join(segments)
        bounds = [0]
        for seg in segments:
            bounds.append(bounds[-1] + len(seg))
        whole, _ = self._encode(text[: bounds[max(wanted) + 1]])
        self._check_length(len(whole))
        plans = {}
        on_whole: dict[int, list[tuple[int, int]]] = defaultdict(list)  # logits row -> (segment, term)
        tails = []
        for i in wanted:
            ids, terms = self._plan(text[: bounds[i + 1]], bounds[i])
            shared = shared_prefix(ids, whole)
            plans[i] = (ids, terms, [0.0] * len(terms))
            for n, t in enumerate(terms):
                if t.position <= shared:
                    on_whole[t.position - 1].append((i, n))
                elif i not in tails:
                    tails.append(i)
        with self._model_thread.background(cancel) as lock, torch.inference_mode():
            if on_whole:
                cache, done = self.engine.new_state(whole, min(on_whole))
                for start in range(done, len(whole), SCORE_CHUNK):
                    chunk = whole[start : start + SCORE_CHUNK]
                    # logits only where a term is read: the vocabulary projection is most of a chunk's cost
                    rows = [q for q in range(start, start + len(chunk)) if q in on_whole] or [start + len(chunk) - 1]
                    out = self.engine.forward([chunk], cache, logits_to_keep=self.engine.tensor([q - start for q in rows]))
                    for k, q in enumerate(rows):
                        if q in on_whole:
                            row = out.logits[0, k].float()
                            lse = torch.logsumexp(row, -1)
                            for i, n in on_whole[q]:
                                plans[i][2][n] = self._value(row, lse, plans[i][1][n].candidates)
                    lock.pause_if_wanted(cancel)
                self.engine.keep_state(whole, cache, done)  # the path just read is what the next expansion reads first
            for i in tails:  # the tokenisation of the text up to this segment's end differs near its end
                ids, terms, values = plans[i]
                shared = shared_prefix(ids, whole)
                feed = max(t.position for t in terms)
                cache, done = self.engine.new_state(ids, shared)
                out = self.engine.forward([ids[done:feed]], cache)
                for n, t in enumerate(terms):
                    if t.position > shared:
                        row = out.logits[0, t.position - 1 - done].float()
                        values[n] = self._value(row, torch.logsumexp(row, -1), t.candidates)
                lock.pause_if_wanted(cancel)
        return {i: tokens_of(terms, values) for i, (_ids, terms, values) in plans.items()}

    # -- many short texts after one prompt (answer sets) ---------------------------------------------------------

    def _eval_items(self, items: list[tuple[list[int], list[Term]]], batch: int = 32) -> list[float]:
        """Σ sign × value of each item's terms. Items are read together: the prompt they share once, then the
        different tails in batches (right padding is harmless: no real token attends to the padding after it);
        items that feed the same tokens (an answer with several terminators) share one row."""
        torch = self.torch
        feeds = [tuple(ids[: max(t.position for t in terms)]) for ids, terms in items]
        common = min(shared_prefix(list(f), list(feeds[0])) for f in feeds)
        low = min(t.position for _ids, terms in items for t in terms) - 1
        common = max(1, min(common, low + 1))
        users: dict[tuple, list[int]] = defaultdict(list)  # feed -> the items that read it
        for n, f in enumerate(feeds):
            users[f].append(n)
        unique = list(users)
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else min(self.eos_ids)
        self._check_length(max(len(f) for f in unique))
        totals = [0.0] * len(items)
        with self._model_thread.urgent(), torch.inference_mode():
            state, last = self.engine.prefill(list(feeds[0][:common]), common - 1)
            head = last[-1]
            for start in range(0, len(unique), batch):
                group = unique[start : start + batch]
                width = max(len(f) - common for f in group)
                logits = None
                if width:
                    ids = [list(f[common:]) + [pad] * (width - len(f) + common) for f in group]
                    cache = copy.deepcopy(state)
                    self.engine.fork(cache, len(group))
                    logits = self.engine.forward(ids, cache).logits
                for b, f in enumerate(group):
                    seen: dict[int, tuple] = {}
                    for n in users[f]:
                        for t in items[n][1]:
                            q = t.position - 1
                            if q not in seen:
                                row = head if q == common - 1 else logits[b, q - common].float()
                                seen[q] = (row, torch.logsumexp(row, -1))
                            totals[n] += t.sign * self._value(*seen[q], t.candidates)
        return totals

    def _answer_item(self, prefix: str, answer: str, eos: bool) -> tuple[list[int], list[Term]]:
        ids, terms = self._plan(prefix + answer, len(prefix))
        if not terms:
            raise InvalidInput(f"the answer {answer!r} tokenises to nothing")
        if eos:  # the text ends here: its last token exactly, then the end of text
            last = max(range(len(terms)), key=lambda n: (terms[n].sign > 0, terms[n].position))
            t = terms[last]
            terms[last] = Term(t.position, ids[t.position], 1, t.text)
            terms.append(Term(len(ids), min(self.eos_ids), 1, ""))
        return ids, terms

    def _score_many(self, prefix: str, continuations: list[str], eos: bool) -> list[float]:
        return self._eval_items([self._answer_item(prefix, c, eos) for c in continuations])

    def _score_answers(self, prefix: str, answers: list[str], terminators: list[str]) -> list[list[float]]:
        """A row per answer: log P(the answer, then text starting with the terminator) for each terminator
        (``"<eos>"``: the end of text). A terminator counts when the next token only starts with it ("\\n\\n"
        after "\\n")."""
        items = [self._answer_item(prefix, a + ("" if t == "<eos>" else t), t == "<eos>")
                 for a in answers for t in terminators]
        flat = self._eval_items(items)
        k = len(terminators)
        return [flat[i * k : (i + 1) * k] for i in range(len(answers))]

    # -- the next token ------------------------------------------------------------------------------------------

    def _next_logits(self, prefix: str):
        ids = self.encode(prefix)
        self._check_length(len(ids))
        with self._model_thread.urgent(), self.torch.inference_mode():
            return self.engine.prefill(ids, len(ids) - 1)[1][-1]

    def _next_token(self, prefix: str, k: int) -> list[tuple[str, float]]:
        return list(self._top(self.torch.log_softmax(self._next_logits(prefix), dim=-1), k))

    def _entropy(self, prefix: str) -> float:
        lp = self.torch.log_softmax(self._next_logits(prefix).double(), -1)
        return float(-(lp.exp() * lp).sum()) / math.log(2)
