"""Figures the product reports, computed on fixed seeds with the mock model and tiny random transformers models:
generated tokens with their logprobs, alternatives and ledger figures (decoding, steering), scores at joins, the
next-token distribution and entropy, an exact answer distribution, and the ledger of a path with a written node,
an edit and a choice. Recorded once (``python -m tests.golden`` writes tests/fixtures/golden_figures.json) and
compared by tests/test_golden_figures.py: a change of structure must leave every one of them as it was."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "golden_figures.json"


def _tokens(tokens) -> list:
    return [[t.text, t.id, t.logprob, [list(a) for a in t.top], t.decode_kl, t.steer_kl, t.base_logprob]
            for t in tokens]


async def compute(store) -> dict:
    import torch

    from loomwork import curation, ledger, ops
    from loomwork.backends import get_backend
    from loomwork.backends.base import SamplingParams, Steer
    from loomwork.backends.hf import HFBackend
    from loomwork.lens.distributions import answer_distribution
    from tests.tiny_model import build_tiny_gemma, build_tiny_lm

    out: dict = {}
    mock = get_backend("mock:default")
    _tree, root = ops.new_tree(store, "The river ran")
    kids = await ops.expand(store, root.id, mock, SamplingParams(n=3, max_tokens=8, seed=7, temperature=0.8,
                                                                 top_p=0.9))
    out["mock_expand"] = [_tokens(k.tokens) for k in kids]
    out["mock_next"] = [list(x) for x in await mock.next_token("The river ran", 5)]
    out["mock_score"] = _tokens(await mock.score("The river ran", " and the"))

    lm, tok = build_tiny_lm()
    tiny = HFBackend("tiny", lm=lm, tokenizer=tok)
    done = await tiny.complete("The river ran", SamplingParams(n=2, max_tokens=8, seed=4, temperature=0.7, top_k=12,
                                                               top_p=0.9))
    out["hf_expand"] = [_tokens(c.tokens) for c in done.completions]
    greedy = await tiny.complete("The river ran", SamplingParams(n=1, max_tokens=6, temperature=0.0))
    out["hf_greedy"] = [_tokens(c.tokens) for c in greedy.completions]
    torch.manual_seed(11)
    vector = tuple(float(x) for x in torch.randn(lm.config.hidden_size))
    steer = Steer(name="v", coef=3.0, layer=1, model="hf:tiny", norm=1.0, vector=vector)
    steered = await tiny.complete("The river ran", SamplingParams(n=2, max_tokens=6, seed=2, steer=(steer,)))
    out["hf_steered"] = [_tokens(c.tokens) for c in steered.completions]
    out["hf_next"] = [list(x) for x in await tiny.next_token("The river ran", 5)]
    out["hf_entropy"] = await tiny.entropy("The river ran")
    dist = await answer_distribution(tiny, "I pick", [" a", " b", " ab"], [".", "\n"])
    out["hf_answers"] = {"probs": dist.probs, "mass": dist.mass}

    glm, gtok = build_tiny_gemma(window=8)
    gemma = HFBackend("tiny-gemma", lm=glm, tokenizer=gtok)
    scored = await gemma.score_segments(["Then the", " th", "ere was the other"], [1, 2])
    out["gemma_joins"] = {str(k): _tokens(v) for k, v in sorted(scored.items())}
    _tree, groot = ops.new_tree(store, "Then there was")
    gkids = await ops.expand(store, groot.id, gemma, SamplingParams(n=3, max_tokens=10, seed=1))
    edited = ops.edit(store, gkids[0].id, gkids[0].text[:3] + " the sea " + gkids[0].text[-2:])
    written = ops.add_child(store, edited.id, " and then the other")
    curation.record_choice(store, gkids[1].id)
    report = await ledger.path_report(store, written.id, gemma.ref, gemma)
    out["ledger_path"] = [{k: r[k] for k in ("ledger", "selection_bits", "intervention_bits", "model_tokens")}
                          for r in report["nodes"]]
    out["ledger_path_totals"] = {k: report["path"][k] for k in ("ledger", "total_bits", "selection_kl_bits")}
    choice = await ledger.path_report(store, gkids[1].id, gemma.ref, gemma)
    out["ledger_choice"] = choice["nodes"][-1]["ledger"]
    tree = await ledger.tree_report(store, groot.tree_id, gemma)
    out["ledger_tree"] = {k: tree["tree_totals"][k] for k in ("ledger", "total_bits", "selection_kl_bits")}
    return out


def close(a, b, path: str = "") -> list[str]:
    """Where ``a`` and ``b`` differ (floats to 1e-6 relative or absolute), as readable paths."""
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None or abs(a - b) > 1e-6 * max(1.0, abs(a), abs(b)):
            return [f"{path}: {a!r} != {b!r}"]
        return []
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in close(x, y, f"{path}[{i}]")]
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(a)} != {sorted(b)}"]
        return [d for k in a for d in close(a[k], b[k], f"{path}.{k}")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def main() -> None:
    import os
    import tempfile

    os.environ["LOOMWORK_HOME"] = tempfile.mkdtemp(prefix="loomwork-golden-")
    from loomwork import Store

    store = Store.open(str(Path(os.environ["LOOMWORK_HOME"]) / "golden.sqlite"))
    figures = asyncio.run(compute(store))
    FIXTURE.write_text(json.dumps(figures, indent=0), encoding="utf-8")
    print(f"wrote {FIXTURE}")


if __name__ == "__main__":
    main()
