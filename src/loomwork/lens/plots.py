"""Plots of a compare report (matplotlib, written as PNG files)."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """matplotlib's pyplot drawing to files only, or None when matplotlib (the extra ``lens``) is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def write_plots(report: dict, out: Path) -> list[Path]:
    plt = pyplot()
    if plt is None:
        from ..errors import Unsupported

        raise Unsupported("plots need matplotlib: pip install 'loomwork[lens]'")

    out.mkdir(parents=True, exist_ok=True)
    written = []
    models = report["models"]
    for probe in report["probes"]:
        if not probe["results"]:
            continue
        fig, axes = plt.subplots(len(probe["results"]), 1, figsize=(11, 2.4 * len(probe["results"])), squeeze=False)
        for ax, res in zip(axes[:, 0], probe["results"]):
            answers = list(res["distribution"])
            ax.bar(range(len(answers)), list(res["distribution"].values()), width=0.9)
            step = max(1, len(answers) // 25)
            ax.set_xticks(range(0, len(answers), step), [answers[i].strip() for i in range(0, len(answers), step)],
                          fontsize=7)
            ax.set_title(f"{res['model']}: top {res['top1'].strip()!r} {res['top1_prob']:.1%}, "
                         f"H = {res['entropy_bits']:.2f} bits, mass on set {res['mass_on_set']:.1%}", fontsize=9)
            ax.set_ylabel("p (renormalised)", fontsize=8)
        fig.suptitle(probe["prompt"].replace("\n", " ⏎ ")[:100], fontsize=9)
        written.append(save(fig, out / f"distribution-{probe['id']}.png"))
    if report["probes"]:
        ids = [p["id"] for p in report["probes"]]

        def per_probe(key: str) -> dict[str, list[float]]:
            return {m: [next((r[key] for r in p["results"] if r["model"] == m), None) or 0 for p in report["probes"]]
                    for m in models}

        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.5))
        _grouped_bars(a1, ids, per_probe("entropy_relative"), "entropy / entropy of uniform")
        _grouped_bars(a2, ids, per_probe("top1_prob"), "top-1 probability")
        written.append(save(fig, out / "entropy-top1.png"))
    if report["generations"]:
        metrics = ["unique_fraction", "distinct_1", "distinct_2", "ead_1", "embedding_diversity"]
        means = {m: [_mean([r.get(metric) for g in report["generations"] for r in g["results"] if r["model"] == m])
                     for metric in metrics] for m in models}
        fig, ax = plt.subplots(figsize=(11, 3.5))
        _grouped_bars(ax, metrics, means, "free-generation diversity (mean over prompts)")
        written.append(save(fig, out / "diversity.png"))
    return written


def _mean(values) -> float:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else 0.0


def _grouped_bars(ax, labels: list[str], series: dict[str, list[float]], title: str) -> None:
    """One group of bars per label, one bar per model."""
    width = 0.8 / max(1, len(series))
    for k, (name, values) in enumerate(series.items()):
        ax.bar([i + k * width for i in range(len(labels))], values, width, label=name)
    ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(labels))], labels, rotation=30, fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)


def save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
