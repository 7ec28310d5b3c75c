"""The llama.cpp engine's batched sampler (engine/sampler.sample_rows) against the one-row sampler it stands in for
(sample_array, itself tested against numpy in test_ledger): the same logprobs, alternatives and KL, draws from the
same distribution (a chi-square test on a small vocabulary), never a banned token."""

from __future__ import annotations

import numpy as np
import pytest

from loomwork.backends import SamplingParams
from loomwork.engine.sampler import BLOCK, fast, sample_array, sample_rows


def _rows(m: int, v: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 3, (m, v)) + rng.normal(0, 1, (m, 1))).astype(np.float32)


@pytest.mark.parametrize("v", [3 * BLOCK, 2 * BLOCK + 37])  # whole blocks, and a padded last one
@pytest.mark.parametrize("temperature", [1.0, 0.7, 1.6])
def test_figures_equal_the_one_row_sampler(v, temperature):
    logits = _rows(4, v, int(temperature * 10) + v)
    banned = np.array([3, 17, v - 1])
    params = SamplingParams(n=1, temperature=temperature)
    assert fast(params)
    got = sample_rows(logits, params, banned, np.random.default_rng(0), k=7)
    for r, (tid, lp, top, kl) in enumerate(got):
        full = logits[r].astype(np.float64)
        ref = full - np.logaddexp.reduce(full)
        _, want_kl = sample_array(ref, params, banned, np.random.default_rng(0))
        assert kl == pytest.approx(want_kl, abs=2e-6)
        assert lp == pytest.approx(ref[tid], abs=1e-5) and tid not in banned
        order = np.argsort(-ref)[:7]
        assert [i for i, _ in top] == order.tolist()
        assert [x for _, x in top] == pytest.approx(ref[order].tolist(), abs=1e-5)


def test_draws_follow_the_distribution_and_skip_banned_tokens():
    v = BLOCK + 5
    logits = np.full((1, v), -30.0, np.float32)
    logits[0, :6] = np.log([0.3, 0.25, 0.2, 0.15, 0.06, 0.04])
    logits[0, v - 1] = np.log(0.2)  # a likely token in the padded block, banned
    banned = np.array([v - 1])
    rng = np.random.default_rng(1)
    counts = np.zeros(v)
    for _ in range(6000):
        counts[sample_rows(logits, SamplingParams(n=1), banned, rng, k=0)[0][0]] += 1
    assert counts[v - 1] == 0 and counts[6:v - 1].sum() == 0
    p = np.array([0.3, 0.25, 0.2, 0.15, 0.06, 0.04])
    expected = 6000 * p / p.sum()
    chi2 = float(((counts[:6] - expected) ** 2 / expected).sum())
    assert chi2 < 20.5  # 5 degrees of freedom: p < 0.001 above this


def test_top_p_and_greedy_are_not_fast():
    assert not fast(SamplingParams(n=1, top_p=0.9)) and not fast(SamplingParams(n=1, temperature=0))
    assert fast(SamplingParams(n=1, top_k=5)) and fast(SamplingParams(n=1, min_p=0.1))


@pytest.mark.parametrize("settings", [dict(top_k=5), dict(top_k=40, temperature=0.8), dict(min_p=0.05),
                                      dict(top_k=30, min_p=0.1, temperature=1.3)])
def test_truncation_equals_the_one_row_sampler(settings):
    v = 3 * BLOCK + 11
    logits = _rows(3, v, 7)
    banned = np.array([0, 5])
    params = SamplingParams(n=1, **settings)
    assert fast(params)
    for r, (tid, lp, top, kl) in enumerate(sample_rows(logits, params, banned, np.random.default_rng(3), k=5)):
        full = logits[r].astype(np.float64)
        ref = full - np.logaddexp.reduce(full)
        _, want_kl = sample_array(ref, params, banned, np.random.default_rng(0))
        assert kl == pytest.approx(want_kl, abs=2e-6) and lp == pytest.approx(ref[tid], abs=1e-5)
        assert tid not in banned
        if params.top_k:
            assert ref[tid] >= np.sort(ref)[-params.top_k] - 1e-6  # inside the kept set
        assert [i for i, _ in top] == np.argsort(-ref)[:5].tolist()
