"""Tuned against base: the lens suites (exact answer distributions, free-generation diversity; their prompts are
none of the training data's) for both models, the KL spent and the held-out loss before and after (on the held-out
prompts, which it names), written beside the adapter as report.json."""

from __future__ import annotations

import json

from ..backends.pool import PROCESS, ModelPool
from ..lens import suite as suites
from ..lens.report import run_suite
from . import adapters

SUITES = ("random-numbers", "creative-writing")


def _summary(report: dict) -> dict:
    """Per model: mean entropy (bits) and mean top-1 probability over the probes; mean distinct-2 and unique
    fraction over the generations."""
    out: dict[str, dict] = {}
    for probe in report["probes"]:
        for r in probe["results"]:
            m = out.setdefault(r["model"], {"entropy": [], "top1": [], "distinct_2": [], "unique": []})
            m["entropy"].append(r["entropy_bits"])
            m["top1"].append(r["top1_prob"])
    for gen in report["generations"]:
        for r in gen["results"]:
            m = out.setdefault(r["model"], {"entropy": [], "top1": [], "distinct_2": [], "unique": []})
            if r.get("distinct_2") is not None:
                m["distinct_2"].append(r["distinct_2"])
            m["unique"].append(r["unique_fraction"])
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    return {model: {k: mean(v) for k, v in m.items()} for model, m in out.items()}


async def tuned_vs_base(name: str, samples: int = 8, seed: int = 0, embeddings: bool = False,
                        progress=lambda _m: None, models: ModelPool = PROCESS) -> dict:
    meta = adapters.meta(name)
    base, tuned = models.get(f"hf:{meta['base']}"), models.get(f"hf:{meta['base']}+{name}")
    out = {"adapter": name, "base": base.ref, "tuned": tuned.ref, "method": meta["config"]["method"],
           "kl_budget_bits": meta["config"]["kl_budget"], "kl_spent_bits": meta.get("kl_bits"),
           "kl_se_bits": meta.get("kl_se"), "heldout_loss_before": meta.get("heldout_loss_before"),
           "heldout_loss_after": meta.get("heldout_loss"),
           # the before/after figures above are on held-out prompts only (none of their rows or texts trained)
           "heldout": {k: ((meta.get("provenance") or {}).get("data") or {}).get("heldout", {}).get(k)
                       for k in ("rows", "prompts", "how")},
           "suites": {}}
    for s in SUITES:
        report = await run_suite([base, tuned], suites.load(s), samples=samples, seed=seed, embeddings=embeddings,
                                 progress=progress)
        out["suites"][s] = {"summary": _summary(report), "report": report}
    (adapters.directory(name) / "report.json").write_text(json.dumps(out, indent=1), encoding="utf-8")
    return out
