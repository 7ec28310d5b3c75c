"""How close the ledger's decoding bits are to a float64 recomputation (docs/metrics.md, "Decoding settings").

    .venv/bin/python bench/decoding_precision.py [--model hf:gemma-3-270m] [--n 4] [--max-tokens 48]

Samples nodes under several decoding settings, then reads each node's path again in one teacher-forced pass of
the same model converted to float64 and computes the KL of the sampling distribution from the model's at every
sampled position, with the same formula (whose arithmetic tests/test_ledger.py checks against numpy to 1e-9).
What differs is only the logits: float32 at generation time (KV cache, batch of n, packed products) against
float64 of one pass. Prints per setting the largest relative and absolute error per node.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import tempfile

SETTINGS = [dict(temperature=0.7), dict(temperature=1.3), dict(temperature=0.8, top_p=0.9),
            dict(temperature=1.0, top_k=40), dict(temperature=1.0, min_p=0.05), dict(temperature=1.0)]
PROMPT = "The old lighthouse keeper climbed the stairs and"


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="hf:gemma-3-270m")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=48)
    args = ap.parse_args()
    os.environ.setdefault("LOOMWORK_HOME", tempfile.mkdtemp(prefix="loomwork-precision-"))

    import torch

    from loomwork import Store, ops
    from loomwork.backends import SamplingParams, get_backend

    store = Store.open()
    backend = get_backend(args.model)
    _tree, root = ops.new_tree(store, PROMPT)
    reference = None
    print(f"model {backend.ref}; {args.n} samples x {args.max_tokens} tokens per setting; float32 at generation "
          "against a float64 teacher-forced pass")
    worst_rel = worst_abs = 0.0
    for k, settings in enumerate(SETTINGS):
        params = SamplingParams(n=args.n, max_tokens=args.max_tokens, seed=k, **settings)
        kids = await ops.expand(store, root.id, backend, params)
        if reference is None:  # after the first expansion: the backend has loaded its model
            reference = backend.lm.double()  # the same weights, now in float64 (generation is done with them)
        rel = abs_err = 0.0
        for kid in kids:
            tokens = [t for t in kid.tokens if not t.cont]
            ids = backend.tok.encode(PROMPT, add_special_tokens=True) + [t.id for t in tokens]
            start = len(ids) - len(tokens) - 1
            with torch.no_grad():
                lp = torch.log_softmax(reference(input_ids=torch.tensor([ids])).logits[0, start:start + len(tokens)]
                                       .double(), -1)
            _chosen, kl = backend._sample(lp, params, torch.Generator().manual_seed(0))
            want = float(kl.sum()) / math.log(2)
            got = sum(t.decode_kl for t in tokens) / math.log(2)
            abs_err = max(abs_err, abs(got - want))
            rel = max(rel, abs(got - want) / want if want > 0 else 0.0)
        backend.lm.float()
        reference = None
        worst_rel, worst_abs = max(worst_rel, rel), max(worst_abs, abs_err)
        label = ", ".join(f"{k}={v}" for k, v in settings.items())
        print(f"  {label:<28} largest error per node: relative {rel:.2e}, absolute {abs_err:.2e} bits")
    print(f"worst: relative {worst_rel:.2e}, absolute {worst_abs:.2e} bits per node")


if __name__ == "__main__":
    asyncio.run(main())
