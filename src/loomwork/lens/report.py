"""Run a probe suite on several models: exact answer distributions, divergences between models, and the
diversity of free generations. The report holds every parameter, so a run can be repeated."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from typing import Callable

from ..backends.base import Backend, SamplingParams
from ..errors import Unsupported
from .distributions import answer_distribution, compare
from .diversity import diversity, embedder
from .suite import Suite


async def run_suite(backends: list[Backend], suite: Suite, samples: int = 16, seed: int | None = None,
                    max_tokens: int | None = None, embeddings: bool = True,
                    keep: Callable[[str], bool] | None = None,
                    progress: Callable[[str], None] = lambda _m: None) -> dict:
    seed = random.randrange(2**31) if seed is None else seed
    embed = embedder() if embeddings and suite.generations else None
    report: dict = {
        "suite": suite.name, "description": suite.description, "models": [b.ref for b in backends],
        # what each model's figures were computed in (device, weights, logits), where the model says
        "precision": {b.ref: b.precision() for b in backends},
        "parameters": {"samples": samples, "seed": seed, "max_tokens": max_tokens, "temperature": 1.0,
                       "embedding_model": "all-MiniLM-L6-v2" if embed else None, "quality_filter": keep is not None},
        "created_at": datetime.now(timezone.utc).isoformat(), "probes": [], "generations": [], "notes": [],
    }
    for probe in suite.probes:
        dists = []
        for b in backends:
            progress(f"{probe.id}: scoring {len(probe.answers)} answers with {b.ref}")
            try:
                dists.append(await answer_distribution(b, probe.prompt, probe.answers, probe.terminators))
            except Unsupported as exc:
                report["notes"].append(f"{probe.id}: {exc}")
        report["probes"].append({"id": probe.id, "prompt": probe.prompt, "terminators": probe.terminators,
                                 "results": [d.to_json() for d in dists], "between_models": compare(dists)})
    for gen in suite.generations:
        entry = {"id": gen.id, "prompt": gen.prompt, "results": []}
        for b in backends:
            progress(f"{gen.id}: sampling {samples} continuations from {b.ref}")
            params = SamplingParams(n=samples, max_tokens=max_tokens or gen.max_tokens, seed=seed, temperature=1.0)
            done = await b.complete(gen.prompt, params)
            texts = [c.text.strip() for c in done.completions]
            result = {"model": b.ref, **diversity(texts, embed), "examples": texts[:5]}
            if keep is not None:
                kept = [t for t in texts if keep(t)]
                result["filtered"] = {"kept": len(kept), **diversity(kept, embed)}
            entry["results"].append(result)
        report["generations"].append(entry)
    return report
