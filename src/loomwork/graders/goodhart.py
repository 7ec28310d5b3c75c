"""The Goodhart curve (Gao et al., 2022, "Scaling laws for reward model overoptimization"): how the gold score of
best-of-n against a proxy grader moves as n grows, against d = √KL(best-of-n ‖ base).

One pool of N samples is drawn and scored once by both graders. For each n ≤ N, best-of-n's expected proxy and
gold scores are the order-statistics estimates from that pool: with the samples ranked by proxy score, the best
of n drawn without replacement is the one of rank i (1 = lowest) with probability C(i−1, n−1) / C(N, n); samples
tied on the proxy share their gold scores' mean (the best of tied samples is any of them, equally likely). KL is
best-of-n's over the pool's proxy scores with their ties (``levers.grader.top_k_of_n_kl``: ln n − (n−1)/n nats when no
two samples tie, 0 for a proxy that scores every sample the same). Every point has a bootstrap interval (the pool
resampled). The gold curve is fitted as d(α − βd) by least squares through the origin; it peaks at d* = α / 2β
only when α > 0 and β > 0 (otherwise more selection never helped the gold score: no peak).
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Callable

from ..levers.grader import top_k_of_n_kl
from ..units import LN2
from ..backends.pool import PROCESS, ModelPool
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


def _ranked(proxy: list[float], gold: list[float]) -> tuple[list[float], list[float]]:
    """Proxy scores ascending with their gold scores, ties on the proxy sharing their gold scores' mean."""
    order = sorted(range(len(proxy)), key=lambda i: proxy[i])
    r = [proxy[i] for i in order]
    g = [gold[i] for i in order]
    i = 0
    while i < len(r):  # ties on the proxy: the best of them is any, equally likely
        j = i
        while j + 1 < len(r) and r[j + 1] == r[i]:
            j += 1
        mean = sum(g[i : j + 1]) / (j + 1 - i)
        g[i : j + 1] = [mean] * (j + 1 - i)
        i = j + 1
    return r, g


def _weights(pool: int, ns: list[int]) -> list[list[float]]:
    """Per n, the probability that the best of n drawn without replacement has rank i (0-based): C(i, n−1)/C(N, n)."""
    return [[math.comb(rank, n - 1) / math.comb(pool, n) for rank in range(pool)] for n in ns]


def _points(proxy: list[float], gold: list[float], ns: list[int], weights: list[list[float]],
            ids: list | None = None) -> list[dict]:
    r, g = _ranked(proxy, gold)
    out = []
    for n, w in zip(ns, weights):
        kl = top_k_of_n_kl(proxy, n, 1, ids) * LN2
        out.append({"n": n, "proxy": sum(a * b for a, b in zip(w, r)), "gold": sum(a * b for a, b in zip(w, g)),
                    "kl_nats": kl, "sqrt_kl": math.sqrt(kl)})
    return out


def _interval(values: list[float]) -> list[float]:
    values = sorted(values)
    return [values[int(0.025 * (len(values) - 1))], values[int(0.975 * (len(values) - 1))]]


def curve(proxy: list[float], gold: list[float], ns: list[int], bootstrap: int = 0, seed: int = 0) -> list[dict]:
    """Expected proxy and gold of best-of-n for each n, from one pool (order statistics, exact over the pool), and
    the KL of best-of-n over the pool's proxy scores; with ``bootstrap`` > 0, a 95% percentile interval for each
    figure from that many resamples of the pool (a sample drawn twice is one sample: no tie is made up)."""
    return _curve(proxy, gold, ns, bootstrap, seed)[0]


def _curve(proxy: list[float], gold: list[float], ns: list[int], bootstrap: int, seed: int
           ) -> tuple[list[dict], list[list[dict]]]:
    check_ns(ns, len(proxy))
    weights = _weights(len(proxy), ns)
    points = _points(proxy, gold, ns, weights)
    rng = random.Random(seed)
    draws: list[list[dict]] = []
    for _ in range(bootstrap):
        pick = [rng.randrange(len(proxy)) for _ in proxy]
        draws.append(_points([proxy[i] for i in pick], [gold[i] for i in pick], ns, weights, pick))
    if draws:
        for k, p in enumerate(points):
            for field in ("proxy", "gold", "sqrt_kl"):
                p[f"{field}_ci"] = _interval([d[k][field] for d in draws])
    return points, draws


def fit(points: list[dict]) -> dict:
    """gold − gold(n=1) ≈ d(α − βd), least squares through the origin; the peak d* = α/2β when α > 0 and β > 0."""
    base = next((p["gold"] for p in points if p["n"] == 1), None)
    if base is None or len(points) < 3:
        return {"alpha": None, "beta": None, "peak_sqrt_kl": None, "note": "needs n = 1 and at least 3 points"}
    d = [p["sqrt_kl"] for p in points]
    y = [p["gold"] - base for p in points]
    s2, s3, s4 = (sum(x**k for x in d) for k in (2, 3, 4))
    sy1, sy2 = sum(x * v for x, v in zip(d, y)), sum(x * x * v for x, v in zip(d, y))
    det = s2 * s4 - s3 * s3
    if det <= 1e-12 * max(s2 * s4, 1e-300):
        return {"alpha": None, "beta": None, "peak_sqrt_kl": None,
                "note": "the proxy's KL does not vary with n (it hardly separates the samples): nothing to fit"}
    alpha = (sy1 * s4 - sy2 * s3) / det  # y = α d − β d²: normal equations for (α, −β)
    beta = -(s2 * sy2 - s3 * sy1) / det
    if alpha <= 0:
        return {"alpha": alpha, "beta": beta, "peak_sqrt_kl": None, "peak_n_estimate": None,
                "note": "α ≤ 0: selecting on the proxy never raised the gold score, so there is no peak"}
    if beta <= 0:
        return {"alpha": alpha, "beta": beta, "peak_sqrt_kl": None, "peak_n_estimate": None,
                "note": "β ≤ 0: the gold score still rises at the largest n measured; no peak in sight"}
    return {"alpha": alpha, "beta": beta, "peak_sqrt_kl": alpha / (2 * beta)}


def n_for(sqrt_kl: float, proxy: list[float]) -> float | None:
    """The n whose best-of-n KL over the pool's proxy scores reaches sqrt_kl², by bisection (None if no n does:
    with ties the KL levels off at -ln of the top score's share)."""
    target = sqrt_kl**2

    def kl(n: float) -> float:
        return top_k_of_n_kl(proxy, n, 1) * LN2

    lo, hi = 1.0, 1e9
    if kl(hi) < target:
        return None
    for _ in range(200):
        mid = (lo + hi) / 2
        if kl(mid) < target:
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
    for field, marker in (("proxy", "o"), ("gold", "s")):
        ci = [p.get(f"{field}_ci") for p in pts]
        yerr = None if None in ci else [[p[field] - c[0] for p, c in zip(pts, ci)],
                                        [c[1] - p[field] for p, c in zip(pts, ci)]]
        ax.errorbar(d, [p[field] for p in pts], yerr=yerr, marker=marker, capsize=3,
                    label=f"{field} ({report[field]})" + (", 95% bootstrap" if yerr else ""))
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


async def run(store, node_id: str, backend, proxy: dict, gold: dict, ns: list[int], pool: int, params,
              bootstrap: int = 1000, progress: Callable[[str, int, int], None] = lambda _w, _d, _t: None,
              models: ModelPool = PROCESS) -> dict:
    """Draw ``pool`` continuations of the node once (not stored in the tree), score them with both graders, and
    compute the curve. Samples a grader failed on are left out (and counted). ``progress(what, done, total)``
    as the pool is drawn and scored."""
    from ..tree import path_text
    from .registry import check_usable
    from .scoring import score_texts

    check_ns(ns, pool)
    for g in (proxy, gold):
        if g["kind"] == "person":
            raise InvalidInput(f"grader {g['name']!r} is a person's ratings: the pool's samples are not rated")
        check_usable(g, models)  # before the pool is drawn
    context = path_text(store.path(node_id))
    texts: list[str] = []
    progress("sampling", 0, pool)
    while len(texts) < pool:  # at most 16 samples a call (each its own seed), so progress shows
        m = min(16, pool - len(texts))
        done = await backend.complete(context, params.model_copy(update={"n": m, "seed": params.seed + len(texts)}))
        texts += [c.text for c in done.completions]
        progress("sampling", len(texts), pool)
    p = await score_texts(proxy, context, texts, models=models,
                          progress=lambda d, t: progress(f"scoring with {proxy['name']}", d, t))
    q = await score_texts(gold, context, texts, models=models,
                          progress=lambda d, t: progress(f"scoring with {gold['name']}", d, t))
    keep = [i for i in range(len(texts)) if p[i][0] is not None and q[i][0] is not None]
    failed = len(texts) - len(keep)
    check_ns(ns, len(keep))
    proxy_scores = [p[i][0] for i in keep]
    points, draws = _curve(proxy_scores, [q[i][0] for i in keep], ns, bootstrap, params.seed)
    notes = ["the proxy and the gold are the same grader: the curve cannot show Goodhart"] \
        if proxy["id"] == gold["id"] else []
    if len(set(proxy_scores)) == 1:
        notes.append("the proxy gave every sample the same score: best-of-n on it is the model itself (KL 0)")
    f = fit(points)
    fits = [fit(d) for d in draws]
    alphas = [x["alpha"] for x in fits if x.get("alpha") is not None]
    if f.get("alpha") is not None and alphas:
        f["alpha_ci"] = _interval(alphas)  # and how often a resampled pool shows a peak at all:
        f["peak_share"] = sum(1 for x in fits if x.get("peak_sqrt_kl") is not None) / len(fits)
    if f.get("peak_sqrt_kl") is not None:
        f["peak_n_estimate"] = n_for(f["peak_sqrt_kl"], proxy_scores)
        if f["peak_sqrt_kl"] > points[-1]["sqrt_kl"]:
            notes.append("the fitted peak lies beyond the largest n measured: an extrapolation")
            f["extrapolated"] = True
    elif f.get("note"):
        notes.append(f["note"])
    return {"node": node_id, "model": backend.ref, "proxy": proxy["name"], "gold": gold["name"], "pool": len(keep),
            "failed": failed, "seed": params.seed, "bootstrap": bootstrap, "points": points, "fit": f,
            "notes": notes, "errors": sorted({e for _s, e in p + q if e})[:5],
            # what every figure above was computed from, so that anyone can compute it again
            "samples": [{"text": texts[i], "proxy": p[i][0], "gold": q[i][0]} for i in keep]}
