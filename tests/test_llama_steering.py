"""Steering in the llama.cpp engine (backends/llama_steer.py): each token's figures against teacher-forced passes of
the same engine, no steering left behind in what is reused, the refusals, vectors shared between the hf: and
llama: runs of one packaged model, and a vector exported as a control-vector GGUF."""

from __future__ import annotations

import numpy as np
import pytest

from loomwork.backends import SamplingParams, get_backend
from loomwork.backends.base import Steer
from loomwork.backends.registry import same_weights
from loomwork.errors import InvalidInput, Unsupported

pytestmark = pytest.mark.integration
pytest.importorskip("llama_cpp")

P = "The old lighthouse keeper climbed the stairs and"
LAYER = 15


@pytest.fixture(scope="module")
def llama():
    return get_backend("llama:smollm2-135m-instruct")


@pytest.fixture(scope="module")
def vector(llama):
    v = np.random.default_rng(1).normal(0, 1, llama.engine.n_embd)
    return v * 30 / np.linalg.norm(v)


def _steer(vector, coef=1.0, layer=LAYER):
    return Steer(name="v", coef=coef, layer=layer, vector=tuple(float(x) for x in vector))


def _rows(llama, ids: list[int], start: int, by_layer=None) -> list[np.ndarray]:
    """Teacher-forced log-softmax rows for positions start … len(ids) - 1, steered at every position when
    ``by_layer`` is given; what the engine held is dropped so that nothing is reused."""
    e = llama.engine

    def run():
        rows = []
        e._held, e._samples = [], {}
        e.steer(by_layer)
        try:
            e.prefill(ids, start, lambda _p, row: rows.append(row))
        finally:
            e.steer(None)
            e._held = []
        return rows

    return llama._model_thread.run(run)


async def test_each_tokens_figures_against_teacher_forced_passes(llama, vector):
    for whole in (True, False):
        done = await llama.complete(P, SamplingParams(n=3, max_tokens=10, seed=3, steer=(_steer(vector),),
                                                      steer_prompt=whole))
        ids = llama.encode(P)
        for comp in done.completions:
            toks = [t for t in comp.tokens if not t.cont]
            assert toks and all(t.id is not None for t in toks)
            full = ids + [t.id for t in toks]
            base = _rows(llama, full, len(ids) - 1)
            steered = _rows(llama, full, len(ids) - 1, {LAYER: vector}) if whole else None
            for k, t in enumerate(toks):
                assert t.base_logprob == pytest.approx(base[k][t.id], abs=1e-4)  # the unsteered model's
                if whole:  # steered at every position: one teacher-forced pass holds all of it
                    kl = float(np.sum(np.exp(steered[k]) * (steered[k] - base[k])))
                    assert t.logprob == pytest.approx(steered[k][t.id], abs=1e-4)
                    assert t.steer_kl == pytest.approx(kl, abs=1e-4)
            assert sum(t.steer_kl for t in toks) > 0.05  # the vector does something


async def _reused_equals_fresh(llama, child: str) -> None:
    """The next-token view of ``child``, continuing from the sample's kept state (decoding only the join), equals
    a fresh pass over its whole text."""
    before = llama.prefilled
    reused = dict(await llama.next_token(child, k=8))
    assert llama.prefilled - before < 4
    ids = llama.encode(child)
    fresh = _rows(llama, ids, len(ids) - 1)[-1]
    top = np.argsort(-fresh)[:8]
    for tid in top:
        text = llama.engine.piece(int(tid)).decode("utf-8", "replace")
        if text in reused:
            assert reused[text] == pytest.approx(float(fresh[tid]), abs=1e-4)


async def test_coefficient_zero_is_the_unsteered_run_and_nothing_steered_is_reused(llama, vector):
    p = SamplingParams(n=3, max_tokens=8, seed=11)
    plain = await llama.complete(P, p)
    # samples decoded together, one kept: exact (llama-cpp-python's seq_cp then seq_rm of the others was not)
    await _reused_equals_fresh(llama, P + plain.completions[1].text)
    zero = await llama.complete(P, p.model_copy(update={"steer": (_steer(vector, 0.0),)}))
    assert [c.text for c in zero.completions] == [c.text for c in plain.completions]
    assert all(t.steer_kl is None for c in zero.completions for t in c.tokens)
    steered = await llama.complete(P, p.model_copy(update={"steer": (_steer(vector, 3.0),)}))
    await _reused_equals_fresh(llama, P + steered.completions[0].text)  # the unsteered twin: no steering left


async def test_refusals(llama, vector):
    with pytest.raises(InvalidInput, match="steers layers 1..29 .llama.cpp"):
        await llama.complete(P, SamplingParams(n=1, max_tokens=2, steer=(_steer(vector, layer=0),)))
    with pytest.raises(InvalidInput, match="has 3 numbers"):
        await llama.complete(P, SamplingParams(n=1, max_tokens=2, steer=(_steer([1.0, 2.0, 3.0]),)))
    with pytest.raises(InvalidInput, match="at most 32 samples"):
        await llama.complete(P, SamplingParams(n=40, max_tokens=2, steer=(_steer(vector),)))
    with pytest.raises(Unsupported, match="make the vector with the hf: model"):
        await llama.activations(["a"], 3)


def test_one_packaged_models_runs_share_vectors():
    assert same_weights("hf:gemma-3-270m", "llama:gemma-3-270m")
    assert same_weights("llama:smollm2-135m-instruct", "hf:smollm2-135m-instruct")
    assert not same_weights("hf:gemma-3-270m", "llama:smollm2-135m-instruct")
    assert not same_weights("hf:/models/x", "llama:/models/x.gguf")
    assert not same_weights("mock", "hf:gemma-3-270m")
