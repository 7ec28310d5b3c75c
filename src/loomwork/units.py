"""The unit figures are reported in: bits. Models give natural logs (nats); one bit is ln 2 nats."""

import math

LN2 = math.log(2)


def logsumexp(xs) -> float:
    """log Σ exp(x), stably; -inf for no terms or only -inf ones (inf stays inf)."""
    xs = list(xs)
    if not xs:
        return -math.inf
    top = max(xs)
    if not math.isfinite(top):
        return top
    return top + math.log(sum(math.exp(x - top) for x in xs))
