"""Exact answer distributions by teacher-forced scoring, and the divergences between them.

An answer's probability is the probability of all its tokens and then of text starting with a declared
terminator (several terminators add up: "42" counts as an answer if "." or "\\n" follows it, say; a terminator
that starts with another one is already counted by it). Nothing is sampled, so there is
no sampling error; the mass outside the answer set is reported, not hidden by renormalising.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

from ..backends.base import Backend
from ..errors import InvalidInput, Unsupported
from ..units import logsumexp

EOS = "<eos>"  # as a terminator: the end of text itself


def entropy_bits(p: list[float]) -> float:
    return -sum(x * math.log2(x) for x in p if x > 0)


def kl_bits(p: list[float], q: list[float]) -> float:
    """KL(p || q) in bits; infinite where q has no mass under p's."""
    total = 0.0
    for a, b in zip(p, q):
        if a > 0:
            if b <= 0:
                return math.inf
            total += a * math.log2(a / b)
    return total


def js_bits(p: list[float], q: list[float]) -> float:
    """Jensen-Shannon divergence in bits, never below 0 (two nearly equal distributions can round to -1e-19)."""
    m = [(a + b) / 2 for a, b in zip(p, q)]
    return max(0.0, (kl_bits(p, m) + kl_bits(q, m)) / 2)


@dataclass
class AnswerDistribution:
    model: str
    prompt: str
    answers: list[str]
    logprobs: list[float]  # natural log, not renormalised: p(answer, then a terminator)
    terminators: list[str]

    @property
    def mass(self) -> float:
        return math.exp(logsumexp(self.logprobs))

    @property
    def probs(self) -> list[float]:
        z = logsumexp(self.logprobs)
        return [math.exp(lp - z) for lp in self.logprobs]

    def summary(self) -> dict:
        p, n = self.probs, len(self.answers)
        top = max(range(n), key=lambda i: p[i])
        h = entropy_bits(p)
        uniform = [1 / n] * n
        return {
            "model": self.model, "answers": n, "mass_on_set": self.mass, "top1": self.answers[top],
            "top1_prob": p[top], "entropy_bits": h, "entropy_relative": h / math.log2(n) if n > 1 else None,
            "tv_to_uniform": sum(abs(a - b) for a, b in zip(p, uniform)) / 2, "kl_to_uniform_bits": kl_bits(p, uniform),
        }

    def to_json(self) -> dict:
        return {**self.summary(), "prompt": self.prompt, "terminators": self.terminators,
                "distribution": dict(zip(self.answers, self.probs)),
                "logprobs": dict(zip(self.answers, self.logprobs))}


async def answer_distribution(backend: Backend, prompt: str, answers: list[str],
                              terminators: list[str] | str = "\n") -> AnswerDistribution:
    if not answers:
        raise InvalidInput("the answer set is empty")
    if len(set(answers)) != len(answers):
        raise InvalidInput("the answer set has duplicates")
    if any(a == "" for a in answers):
        raise InvalidInput("an answer is empty (it would tokenise to nothing)")
    if not backend.capabilities.scoring:
        raise Unsupported(f"{backend.ref} cannot score text (capability 'scoring'), which exact answer "
                          "distributions need; sample-based metrics still work with it")
    terms = [terminators] if isinstance(terminators, str) else list(terminators)
    if not terms:
        raise InvalidInput("at least one terminator is needed (use \"<eos>\" for the end of text)")
    if any(not isinstance(t, str) or t == "" for t in terms):
        raise InvalidInput("a terminator is empty (use \"<eos>\" for the end of text)")
    # a terminator counts when the next token starts with it, so one that starts with another is counted already
    terms = [t for t in dict.fromkeys(terms)
             if t == EOS or not any(o != t and o != EOS and t.startswith(o) for o in terms)]
    rows = await backend.score_answers(prompt, answers, terms)
    logprobs = [logsumexp(row) for row in rows]
    return AnswerDistribution(backend.ref, prompt, list(answers), logprobs, terms)


def compare(dists: list[AnswerDistribution]) -> list[dict]:
    """KL both ways and Jensen-Shannon between each pair of models' distributions over the same answers."""
    out = []
    for i, a in enumerate(dists):
        for b in dists[i + 1 :]:
            p, q = a.probs, b.probs
            out.append({"models": [a.model, b.model], "kl_ab_bits": kl_bits(p, q), "kl_ba_bits": kl_bits(q, p),
                        "js_bits": js_bits(p, q)})
    return out


async def next_token_entropy(backend: Backend, prefix: str, k: int = 20) -> dict:
    """The top k next tokens and the entropy of the next-token distribution: exact over the whole vocabulary
    where the backend can see it, else a lower bound (the top k plus the rest as one outcome)."""
    # asked together: on a local model both wait in the model thread's queue once, not twice behind other work
    top, exact = await asyncio.gather(backend.next_token(prefix, k=k), backend.entropy(prefix))
    probs = [math.exp(lp) for _, lp in top]
    rest = max(0.0, 1 - sum(probs))
    return {"top": [{"token": t, "prob": p} for (t, _), p in zip(top, probs)], "top1_prob": probs[0] if probs else None,
            "entropy_bits": exact, "entropy_bits_lower_bound": entropy_bits(probs + [rest]), "mass_outside_top": rest}
