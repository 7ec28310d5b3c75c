"""The sampler of the engines: a token per row under temperature, top-k, top-p and min-p (vLLM's order),
with KL(sampling distribution ‖ model distribution) at each row, the decoding lever's cost (levers/decoding.py,
docs/metrics.md): ``sample`` over torch tensors (the torch engine: tensors stay on the device they come on, the
draw exact by inverse CDF), ``sample_array`` over a numpy row (the llama.cpp engine), the same definition."""

from __future__ import annotations


def sample(torch, logprobs, params, banned, gen):
    """One token per row of ``logprobs`` (the model's log-softmax), and the KL at each row in nats. ``banned``:
    ids never sampled (control tokens), so even temperature 1 with no truncation has their mass as a (tiny)
    pressure; ``gen``: the seeded generator."""
    if params.temperature == 0:
        greedy = logprobs if banned is None else logprobs.index_fill(-1, banned, float("-inf"))
        chosen = greedy.argmax(-1)
        return chosen, -logprobs.gather(-1, chosen[:, None])[:, 0]  # a point mass: KL = -log p(chosen)
    # every step below makes a new tensor (logprobs are recorded as they are); full-vocabulary passes are the
    # cost of sampling with a 262k vocabulary, so there are as few as the settings need
    scores = logprobs / params.temperature if params.temperature != 1.0 else logprobs
    if banned is not None:
        scores = scores.index_fill(-1, banned, float("-inf"))
    reshaped = params.temperature != 1.0
    if params.top_k:
        kth = scores.topk(min(params.top_k, scores.shape[-1]), dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
        reshaped = True
    if params.top_p < 1.0:
        sorted_scores, order = scores.sort(dim=-1, descending=True)
        cum = sorted_scores.softmax(-1).cumsum(-1)
        drop = (cum - sorted_scores.softmax(-1)) >= params.top_p  # keep the smallest set reaching top_p
        scores = scores.scatter(-1, order, sorted_scores.masked_fill(drop, float("-inf")))
        reshaped = True
    if params.min_p > 0:
        probs = scores.softmax(-1)
        floor = probs.max(-1, keepdim=True).values * params.min_p
        scores = scores.masked_fill(probs < floor, float("-inf"))
        reshaped = True
    probs = scores.softmax(-1)
    if reshaped:
        logq = torch.log_softmax(scores, -1)
        kl = torch.where(probs > 0, probs * (logq - logprobs), torch.zeros((), dtype=probs.dtype)).sum(-1)
    elif banned is not None:  # q = p without the control tokens, renormalised: KL = -log(1 - their mass)
        kl = -torch.log1p(-logprobs.index_select(-1, banned).exp().sum(-1).clamp(max=1 - 1e-12))
    else:
        kl = torch.zeros(logprobs.shape[0], dtype=logprobs.dtype, device=logprobs.device)
    return draw(torch, probs, gen), kl.clamp(min=0.0)


def draw(torch, probs, gen):
    """One token per row by inverse CDF (cumulative sum in float64, a uniform draw, a binary search): exact
    sampling, ~3 ms for 8 rows of Gemma's 262k vocabulary where torch.multinomial takes ~34 ms (it draws an
    exponential number for every entry)."""
    cdf = probs.double().cumsum(-1)
    u = torch.rand(probs.shape[0], 1, generator=gen, dtype=torch.float64, device=probs.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=probs.shape[-1] - 1)[:, 0]


def sample_array(lp, params, banned, rng) -> tuple[int, float]:
    """The same sampler over one numpy row of log-probabilities (the llama.cpp engine's): a token, and the KL in
    nats. ``banned``: a numpy array of ids never sampled; ``rng``: a seeded numpy Generator."""
    import numpy as np

    scores = lp.copy()
    if banned.size:
        scores[banned] = -np.inf
    if params.temperature == 0:
        tid = int(scores.argmax())
        return tid, float(-lp[tid])
    scores /= params.temperature
    if params.top_k:
        kth = np.partition(scores, -min(params.top_k, scores.size))[-min(params.top_k, scores.size)]
        scores[scores < kth] = -np.inf
    probs = np.exp(scores - scores.max())
    probs /= probs.sum()
    if params.top_p < 1.0:
        order = np.argsort(-probs)
        cum = np.cumsum(probs[order])
        drop = order[(cum - probs[order]) >= params.top_p]  # keep the smallest set reaching top_p
        probs[drop] = 0.0
        probs /= probs.sum()
    if params.min_p > 0:
        probs[probs < probs.max() * params.min_p] = 0.0
        probs /= probs.sum()
    live = probs > 0
    kl = float(np.sum(probs[live] * (np.log(probs[live]) - lp[live])))
    return int(rng.choice(probs.size, p=probs)), max(kl, 0.0)


BLOCK = 1024  # vocabulary entries per block: sums and maxima of blocks find a draw and the top without a sort


def fast(params) -> bool:
    """Whether ``sample_rows`` applies: any temperature above 0 with top-k and min-p, not top-p (which needs a
    sort of the whole vocabulary: ``sample_array``)."""
    return params.temperature > 0 and params.top_p >= 1.0


def sample_rows(logits, params, banned, rng, k: int):
    """One token per row of ``logits`` (float32, rows × vocabulary, the engine's raw output), for settings
    ``fast`` accepts, in a few passes over the rows together (the llama.cpp engine's decoding loop: per-row numpy
    work over a 262k vocabulary cost as much as llama.cpp's own step). Per row: (token, its raw logprob, the k
    most likely (id, raw logprob) descending, KL(sampling ‖ model) in nats) — the same distribution and KL as
    ``sample_array``. Three passes: block maxima (the top k and the shift), exponentials, block sums. The draw is
    exact: inverse CDF over the block sums, then within the chosen block; a banned token drawn is drawn again
    (the distribution conditioned on the allowed tokens, which is what excluding them means)."""
    import numpy as np

    m, v = logits.shape
    pad = (-v) % BLOCK
    lb = (np.pad(logits, ((0, 0), (0, pad)), constant_values=-np.inf) if pad else logits).reshape(m, -1, BLOCK)
    block_max = lb.max(axis=2)
    mx = block_max.max(axis=1)
    t = params.temperature
    w = np.subtract(lb, mx[:, None, None], dtype=np.float32)
    if t != 1.0:
        w /= t
    np.exp(w, out=w)  # the sampling distribution's weights (temperature applied), unnormalised
    bsum = w.sum(axis=2, dtype=np.float64)
    total = bsum.sum(axis=1)
    flat = w.reshape(m, -1)
    z = total - (flat[:, banned].sum(axis=1, dtype=np.float64) if banned.size else 0.0)
    if t == 1.0:
        lse = mx + np.log(total)  # the raw log-partition
        kl = np.log(total) - np.log(z)  # q = p without the banned tokens: KL = −log(1 − their mass)
    else:
        raw = np.exp(lb - mx[:, None, None]).reshape(m, -1)
        lse = mx + np.log(raw.sum(axis=1, dtype=np.float64))
    if t != 1.0 and not (params.top_k or params.min_p > 0):  # the truncated draw computes its own KL
        ql = np.einsum("ij,ij->i", flat, np.where(np.isfinite(lb.reshape(m, -1)), lb.reshape(m, -1), 0.0),
                       dtype=np.float64)
        if banned.size:
            ql -= np.einsum("ij,ij->i", flat[:, banned], logits[:, banned], dtype=np.float64)
        kl = (1.0 / t - 1.0) * ql / z - (np.log(z) + mx / t) + lse
    elif t != 1.0:
        kl = np.zeros(m)
    csum = np.cumsum(bsum, axis=1)
    banned_set = banned if banned.size else ()
    truncated = bool(params.top_k) or params.min_p > 0
    out = []
    for r in range(m):
        if truncated:
            tid, kl_r = _draw_truncated(lb[r], block_max[r], w[r], params, banned, rng, lse[r], mx[r])
            out.append((tid, float(logits[r, tid] - lse[r]), _top_k(lb[r], block_max[r], k, lse[r]), kl_r))
            continue
        while True:
            u = rng.random() * csum[r, -1]
            b = min(int(np.searchsorted(csum[r], u, side="right")), csum.shape[1] - 1)
            inner = np.cumsum(w[r, b], dtype=np.float64)
            j = min(int(np.searchsorted(inner, u - (csum[r, b - 1] if b else 0.0), side="right")), BLOCK - 1)
            while w[r, b, j] == 0.0 and j > 0:  # never a zero-weight entry (the padding)
                j -= 1
            tid = b * BLOCK + j
            if tid not in banned_set:
                break
        out.append((tid, float(logits[r, tid] - lse[r]), _top_k(lb[r], block_max[r], k, lse[r]),
                    max(float(kl[r]), 0.0)))
    return out


def _largest(lb_row, block_max_row, k: int):
    """Ids and raw logits of the k largest entries of one row (blocks × BLOCK), descending: they lie in the k
    blocks with the largest maxima, so only those are searched."""
    import numpy as np

    k = min(k, lb_row.size)
    best = np.argpartition(-block_max_row, min(k, block_max_row.size) - 1)[:k]
    cand = lb_row[best].reshape(-1)
    ids = (best[:, None] * BLOCK + np.arange(BLOCK)).reshape(-1)
    pick = np.argpartition(-cand, k - 1)[:k]
    pick = pick[np.argsort(-cand[pick], kind="stable")]
    return ids[pick], cand[pick]


def _top_k(lb_row, block_max_row, k: int, lse: float) -> tuple:
    if k <= 0:
        return ()
    ids, vals = _largest(lb_row, block_max_row, k)
    return tuple((int(i), float(x - lse)) for i, x in zip(ids, vals))


def _draw_truncated(lb_row, block_max_row, w_row, params, banned, rng, lse: float, mx: float):
    """A token under top-k and/or min-p (after temperature, in the engines' order) and the KL, over the kept set
    only: top-k's candidates come from the k best blocks; min-p keeps the weights (max 1) at or above min_p."""
    import numpy as np

    if params.top_k:
        ids, _ = _largest(lb_row, block_max_row, params.top_k)
        kth = lb_row.reshape(-1)[ids[-1]]
        flat = lb_row.reshape(-1)
        ids = np.nonzero(flat >= kth)[0] if len(ids) < flat.size else ids  # ties at the k-th are kept
    else:
        ids = None
    weights = w_row.reshape(-1)
    if params.min_p > 0:
        if ids is None:
            ids = np.nonzero(weights >= params.min_p * weights.max())[0]
        else:
            ids = ids[weights[ids] >= params.min_p * weights[ids].max()]
    if banned.size:
        ids = ids[~np.isin(ids, banned)]
    scaled = (lb_row.reshape(-1)[ids].astype(np.float64) - mx) / params.temperature
    logq = scaled - np.logaddexp.reduce(scaled)
    q = np.exp(logq)
    logp = lb_row.reshape(-1)[ids].astype(np.float64) - lse
    kl = float(np.sum(q * (logq - logp)))
    cdf = np.cumsum(q)
    j = min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), len(ids) - 1)
    return int(ids[j]), max(kl, 0.0)
