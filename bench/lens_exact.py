"""Exact answer distribution against an estimate from samples, on the default model, in the same run.

    .venv/bin/python bench/lens_exact.py [--model hf:gemma-3-270m] [--samples 1000]

The exact distribution over 0..100 (teacher-forced, batched, the prefix computed once) is timed against drawing
--samples samples and counting the answers. Prints both times, their ratio, how many samples landed in the
answer set, and the total-variation error of the sampled estimate (renormalised over the set, like the exact
one). Goal: exact >= 10x faster, with no sampling error at all.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from collections import Counter

from loomwork.backends import SamplingParams, get_backend
from loomwork.lens.distributions import answer_distribution

PROMPT = "I picked a random number between 0 and 100. The number I picked is"
TERMINATORS = [".", ",", "\n", "!"]
ANSWER = re.compile(r"^ (\d+)[.,\n!]")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="hf:gemma-3-270m")
    ap.add_argument("--samples", type=int, default=1000)
    args = ap.parse_args()
    backend = get_backend(args.model)
    answers = [f" {i}" for i in range(101)]
    await answer_distribution(backend, PROMPT, answers[:3], TERMINATORS)  # warm-up

    t = time.perf_counter()
    exact = await answer_distribution(backend, PROMPT, answers, TERMINATORS)
    t_exact = time.perf_counter() - t

    t = time.perf_counter()
    counts: Counter[str] = Counter()
    drawn, batch = 0, 50
    while drawn < args.samples:
        n = min(batch, args.samples - drawn)
        done = await backend.complete(PROMPT, SamplingParams(n=n, max_tokens=5, seed=drawn, temperature=1.0))
        for c in done.completions:
            m = ANSWER.match(c.text)
            counts[f" {int(m.group(1))}" if m and int(m.group(1)) <= 100 and m.group(1) == str(int(m.group(1)))
                   else "outside"] += 1
        drawn += n
    t_sampled = time.perf_counter() - t
    inside = sum(v for k, v in counts.items() if k != "outside")
    est = [counts[a] / inside if inside else 0.0 for a in answers]
    tv = sum(abs(p - q) for p, q in zip(exact.probs, est)) / 2
    print(f"model {backend.ref}: exact distribution over 0..100 ({len(answers)} answers x {len(TERMINATORS)} terminators)")
    print(f"  exact    {t_exact:7.2f} s   mass on the set {exact.mass:.3f}")
    print(f"  sampled  {t_sampled:7.2f} s   {args.samples} samples, {inside} in the set ({inside / args.samples:.1%})")
    print(f"  time ratio sampled / exact: {t_sampled / t_exact:.1f}x; TV error of the sampled estimate: {tv:.3f}")


if __name__ == "__main__":
    asyncio.run(main())
