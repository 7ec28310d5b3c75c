"""Agreement between raters on ternary labels (-1, 0, +1): pairwise agreement, Cohen's kappa for each pair of
raters, Krippendorff's alpha (ordinal) for all of them, agreement with the majority, and the same split by
whether a critique was shown."""

from __future__ import annotations

from collections import Counter, defaultdict
from itertools import combinations

LABELS = (-1, 0, 1)


def cohen_kappa(a: list[int], b: list[int]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items; None when undefined (no items, or no variation)."""
    n = len(a)
    if n == 0:
        return None
    po = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    pe = sum(ca[k] * cb[k] for k in set(ca) | set(cb)) / (n * n)
    if pe == 1:
        return None
    return (po - pe) / (1 - pe)


def krippendorff_alpha_ordinal(units: list[list[int]]) -> float | None:
    """Krippendorff's alpha with the ordinal metric, from each unit's list of labels (units with < 2 labels
    carry no information and are skipped). None when undefined."""
    units = [u for u in units if len(u) >= 2]
    values = sorted({v for u in units for v in u})
    if not units or len(values) < 2:
        return None
    idx = {v: i for i, v in enumerate(values)}
    k = len(values)
    o = [[0.0] * k for _ in range(k)]
    for u in units:
        m = len(u)
        counts = Counter(u)
        for c, nc in counts.items():
            for d, nd in counts.items():
                pairs = nc * (nd - 1) if c == d else nc * nd
                o[idx[c]][idx[d]] += pairs / (m - 1)
    n_c = [sum(row) for row in o]
    n = sum(n_c)

    def delta2(c: int, d: int) -> float:
        lo, hi = min(c, d), max(c, d)
        return (sum(n_c[lo : hi + 1]) - (n_c[lo] + n_c[hi]) / 2) ** 2

    d_o = sum(o[c][d] * delta2(c, d) for c in range(k) for d in range(k))
    d_e = sum(n_c[c] * n_c[d] * delta2(c, d) for c in range(k) for d in range(k)) / (n - 1)
    return None if d_e == 0 else 1 - d_o / d_e


def summarize(labels: dict[tuple[str, str], int]) -> dict:
    """Statistics of ``{(item, rater): label}`` for one question."""
    by_item: dict[str, dict[str, int]] = defaultdict(dict)
    for (item, rater), label in labels.items():
        by_item[item][rater] = label
    raters = sorted({r for _, r in labels})
    dist = Counter(labels.values())
    pair_stats = []
    agree = total = 0
    for r1, r2 in combinations(raters, 2):
        both = [i for i, rs in by_item.items() if r1 in rs and r2 in rs]
        a, b = [by_item[i][r1] for i in both], [by_item[i][r2] for i in both]
        same = sum(x == y for x, y in zip(a, b))
        agree, total = agree + same, total + len(both)
        pair_stats.append({"raters": [r1, r2], "items": len(both), "agreement": same / len(both) if both else None,
                           "kappa": cohen_kappa(a, b)})
    vs_majority = {}
    for r in raters:
        hits = n = 0
        for rs in by_item.values():
            others = [lab for rr, lab in rs.items() if rr != r]
            if r not in rs or not others:
                continue
            top = Counter(others).most_common()
            if len(top) > 1 and top[0][1] == top[1][1]:
                continue  # no majority among the others
            n += 1
            hits += rs[r] == top[0][0]
        vs_majority[r] = {"items": n, "agreement": hits / n if n else None}
    return {
        "ratings": len(labels), "items": len(by_item), "raters": raters,
        "distribution": {str(k): dist.get(k, 0) for k in LABELS},
        "pairwise_agreement": agree / total if total else None,
        "pairs": pair_stats,
        "krippendorff_alpha_ordinal": krippendorff_alpha_ordinal([list(rs.values()) for rs in by_item.values()]),
        "rater_vs_majority": vs_majority,
    }
