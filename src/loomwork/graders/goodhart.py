"""The Goodhart curve (Gao et al., 2022, "Scaling laws for reward model overoptimization"): how the gold score of
best-of-n against a proxy grader moves as n grows, against d = √KL(best-of-n ‖ base).

One pool of N samples is drawn and scored once by both graders. For each n ≤ N, best-of-n's expected proxy and
gold scores are the order-statistics estimates from that pool: with the samples ranked by proxy score, the best
of n drawn without replacement is the one of rank i (1 = lowest) with probability C(i−1, n−1) / C(N, n); samples
tied on the proxy share their gold scores' mean (the best of tied samples is any of them, equally likely). KL is
best-of-n's ln n − (n−1)/n nats (exact for continuous scores, the bound otherwise). The gold curve is fitted as
d(α − βd) by least squares through the origin; it peaks at d* = α / 2β.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import InvalidInput


MAX_POOL = 512


def check_ns(ns: list[int], pool: int) -> list[int]:
    if not isinstance(pool, int) or not 2 <= pool <= MAX_POOL:
        raise InvalidInput(f"the pool must be 2 to {MAX_POOL} samples, not {pool}")
    if not ns:
        raise InvalidInput("give at least one n")
    if any(not isinstance(n, int) or n < 1 for n in ns):
        raise InvalidInput("every n must be a whole number of at least 1")
    if any(b <= a for a, b in zip(ns, ns[1:])):
        raise InvalidInput(f"the n list must be increasing, not {ns}")
    if ns[-1] > pool:
        raise InvalidInput(f"n = {ns[-1]} is above the pool of {pool} samples")
    return ns


def curve(proxy: list[float], gold: list[float], ns: list[int]) -> list[dict]:
    """Expected proxy and gold of best-of-n for each n, from one pool (order statistics, exact over the pool)."""
    pool = len(proxy)
    check_ns(ns, pool)
    order = sorted(range(pool), key=lambda i: proxy[i])
    r = [proxy[i] for i in order]
    g = [gold[i] for i in order]
    i = 0
    while i < pool:  # ties on the proxy: the best of them is any, equally likely
        j = i
        while j + 1 < pool and r[j + 1] == r[i]:
            j += 1
        mean = sum(g[i : j + 1]) / (j + 1 - i)
        g[i : j + 1] = [mean] * (j + 1 - i)
        i = j + 1
    out = []
    for n in ns:
        total = math.comb(pool, n)
        w = [math.comb(rank, n - 1) / total for rank in range(pool)]  # rank: 0-based, C(i-1, n-1) with i = rank+1
        kl = math.log(n) - (n - 1) / n
        out.append({"n": n, "proxy": sum(a * b for a, b in zip(w, r)), "gold": sum(a * b for a, b in zip(w, g)),
                    "kl_nats": kl, "sqrt_kl": math.sqrt(kl)})
    return out


def fit(points: list[dict]) -> dict:
    """gold − gold(n=1) ≈ d(α − βd), least squares through the origin; the peak d* = α/2β (None if β ≤ 0)."""
    base = next((p["gold"] for p in points if p["n"] == 1), None)
    if base is None or len(points) < 3:
        return {"alpha": None, "beta": None, "peak_sqrt_kl": None, "note": "needs n = 1 and at least 3 points"}
    d = [p["sqrt_kl"] for p in points]
    y = [p["gold"] - base for p in points]
    s2, s3, s4 = (sum(x**k for x in d) for k in (2, 3, 4))
    sy1, sy2 = sum(x * v for x, v in zip(d, y)), sum(x * x * v for x, v in zip(d, y))
    det = s2 * s4 - s3 * s3
    if det == 0:
        return {"alpha": None, "beta": None, "peak_sqrt_kl": None, "note": "degenerate"}
    alpha = (sy1 * s4 - sy2 * s3) / det  # y = α d − β d²: normal equations for (α, −β)
    beta = -(s2 * sy2 - s3 * sy1) / det
    peak = alpha / (2 * beta) if beta > 0 else None
    return {"alpha": alpha, "beta": beta, "peak_sqrt_kl": peak,
            "peak_n_estimate": _n_for(peak) if peak is not None else None}


def _n_for(sqrt_kl: float) -> float | None:
    """The n whose best-of-n KL (ln n − (n−1)/n) reaches sqrt_kl², by bisection."""
    target = sqrt_kl**2
    lo, hi = 1.0, 1e9
    if math.log(hi) - 1 < target:
        return None
    for _ in range(200):
        mid = (lo + hi) / 2
        if math.log(mid) - (mid - 1) / mid < target:
            lo = mid
        else:
            hi = mid
    return lo


def write(report: dict, out: Path) -> None:
    """goodhart.json and goodhart.png in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "goodhart.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    from ..lens.plots import pyplot, save

    plt = pyplot()
    if plt is None:
        return
    pts = report["points"]
    d = [p["sqrt_kl"] for p in pts]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(d, [p["proxy"] for p in pts], marker="o", label=f"proxy ({report['proxy']})")
    ax.plot(d, [p["gold"] for p in pts], marker="s", label=f"gold ({report['gold']})")
    f = report["fit"]
    if f.get("alpha") is not None:
        base = next(p["gold"] for p in pts if p["n"] == 1)
        xs = [max(d) * k / 50 for k in range(51)]
        ax.plot(xs, [base + x * (f["alpha"] - f["beta"] * x) for x in xs], linestyle="--", color="gray",
                label="gold fit d(α − βd)")
    for p in pts:
        ax.annotate(f"n={p['n']}", (p["sqrt_kl"], p["proxy"]), fontsize=7, textcoords="offset points", xytext=(2, 4))
    ax.set(xlabel="√KL(best-of-n ‖ base), √nats", ylabel="expected score", title="Best-of-n: proxy against gold")
    ax.legend(fontsize=8)
    save(fig, out / "goodhart.png")


async def run(store, node_id: str, backend, proxy: dict, gold: dict, ns: list[int], pool: int, params) -> dict:
    """Draw ``pool`` continuations of the node once (not stored in the tree), score them with both graders, and
    compute the curve. Samples a grader failed on are left out (and counted)."""
    from ..tree import path_text
    from .registry import check_usable
    from .scoring import score_texts

    check_ns(ns, pool)
    for g in (proxy, gold):
        if g["kind"] == "person":
            raise InvalidInput(f"grader {g['name']!r} is a person's ratings: the pool's samples are not rated")
        check_usable(g)  # before the pool is drawn
    context = path_text(store.path(node_id))
    texts: list[str] = []
    while len(texts) < pool:  # at most 64 samples a call, each call its own seed
        m = min(64, pool - len(texts))
        done = await backend.complete(context, params.model_copy(update={"n": m, "seed": params.seed + len(texts)}))
        texts += [c.text for c in done.completions]
    p = await score_texts(proxy, context, texts)
    q = await score_texts(gold, context, texts)
    keep = [i for i in range(len(texts)) if p[i][0] is not None and q[i][0] is not None]
    failed = len(texts) - len(keep)
    check_ns(ns, len(keep))
    points = curve([p[i][0] for i in keep], [q[i][0] for i in keep], ns)
    notes = ["the proxy and the gold are the same grader: the curve cannot show Goodhart"] \
        if proxy["id"] == gold["id"] else []
    f = fit(points)
    if f.get("peak_sqrt_kl") is not None and f["peak_sqrt_kl"] > points[-1]["sqrt_kl"]:
        notes.append("the fitted peak lies beyond the largest n measured: an extrapolation")
        f["extrapolated"] = True
    return {"node": node_id, "model": backend.ref, "proxy": proxy["name"], "gold": gold["name"], "pool": len(keep),
            "failed": failed, "seed": params.seed, "points": points, "fit": f, "notes": notes,
            "errors": sorted({e for _s, e in p + q if e})[:5]}
