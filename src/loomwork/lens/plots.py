"""Plots of a compare report (matplotlib, written as PNG files)."""

from __future__ import annotations

from pathlib import Path


def write_plots(report: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

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
        fig.tight_layout()
        path = out / f"distribution-{probe['id']}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    if report["probes"]:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.5))
        ids = [p["id"] for p in report["probes"]]
        width = 0.8 / max(1, len(models))
        for k, m in enumerate(models):
            ent = [next((r["entropy_relative"] for r in p["results"] if r["model"] == m), 0) or 0 for p in report["probes"]]
            top = [next((r["top1_prob"] for r in p["results"] if r["model"] == m), 0) for p in report["probes"]]
            xs = [i + k * width for i in range(len(ids))]
            a1.bar(xs, ent, width, label=m)
            a2.bar(xs, top, width, label=m)
        for ax, title in ((a1, "entropy / entropy of uniform"), (a2, "top-1 probability")):
            ax.set_xticks([i + width * (len(models) - 1) / 2 for i in range(len(ids))], ids, rotation=30, fontsize=7)
            ax.set_title(title, fontsize=9)
        a1.legend(fontsize=7)
        fig.tight_layout()
        path = out / "entropy-top1.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    if report["generations"]:
        metrics = ["unique_fraction", "distinct_1", "distinct_2", "ead_1", "embedding_diversity"]
        fig, ax = plt.subplots(figsize=(11, 3.5))
        width = 0.8 / max(1, len(models))
        for k, m in enumerate(models):
            vals = []
            for metric in metrics:
                rs = [r.get(metric) for g in report["generations"] for r in g["results"] if r["model"] == m]
                rs = [v for v in rs if v is not None]
                vals.append(sum(rs) / len(rs) if rs else 0)
            ax.bar([i + k * width for i in range(len(metrics))], vals, width, label=m)
        ax.set_xticks([i + width * (len(models) - 1) / 2 for i in range(len(metrics))], metrics, fontsize=8)
        ax.set_title("free-generation diversity (mean over prompts)", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / "diversity.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
