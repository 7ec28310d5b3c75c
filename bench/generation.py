"""Sampling throughput of the hf backend against transformers' own generate(), measured in the same run.

    .venv/bin/python bench/generation.py [--model gemma-3-270m] [--n 8] [--tokens 32] [--repeats 2]

Both sides sample n continuations of one prompt with per-token logprobs: loomwork's loop (prefill once, copy the
cache to n rows, record top-5 alternatives and detokenise as it goes) versus
generate(num_return_sequences=n, output_logits=True) followed by a log-softmax. Prints tokens/s and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import time

PROMPT = "The old lighthouse keeper climbed the stairs and"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    import torch

    from loomwork.backends import SamplingParams
    from loomwork.engine import packed_linear
    from loomwork.backends.hf import HFBackend

    backend = HFBackend(args.model)
    lm, tok = backend.lm, backend.tok
    params = SamplingParams(n=args.n, max_tokens=args.tokens, seed=0)

    def ours() -> int:
        done = asyncio.run(backend.complete(PROMPT, params))
        return done.completion_tokens

    def baseline() -> int:
        ids = torch.tensor([tok.encode(PROMPT)])
        with torch.inference_mode():
            out = lm.generate(ids, do_sample=True, num_return_sequences=args.n, max_new_tokens=args.tokens,
                              min_new_tokens=args.tokens, output_logits=True, return_dict_in_generate=True,
                              pad_token_id=tok.eos_token_id)
            for step in out.logits:
                torch.log_softmax(step.float(), -1).topk(5)
        return args.n * args.tokens

    def stock() -> int:
        # transformers as it comes (its own products, not the engine's packed ones), on the engine's model thread
        # so that both run under the same OpenMP conditions (engine/model_thread.py)
        with packed_linear.plain_products(lm):
            return backend._model_thread.run(baseline)

    backend.pieces()  # the piece index the engine builds after loading: 1-2 s of CPU, not part of either
    ours(), stock()  # warm-up
    rates = {"loomwork": [], "transformers generate": []}
    for _ in range(args.repeats):
        for name, fn in (("loomwork", ours), ("transformers generate", stock)):
            t = time.perf_counter()
            count = fn()
            rates[name].append(count / (time.perf_counter() - t))
    best = {k: max(v) for k, v in rates.items()}
    print(f"model {args.model}, n={args.n}, {args.tokens} tokens each, torch threads {torch.get_num_threads()}")
    for name, rate in best.items():
        print(f"  {name:<22} {rate:7.1f} tok/s")
    print(f"  ratio loomwork / generate: {best['loomwork'] / best['transformers generate']:.2f}")


if __name__ == "__main__":
    main()
