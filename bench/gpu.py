"""The torch engine on a GPU, on random-weight models built from configs (nothing to download), in one run:

    python bench/gpu.py [--out results.json]          # on a machine with CUDA
    python bench/gpu.py --smoke                        # the same code on the CPU, tiny shapes (a check, not a figure)

1. batch-1 decode tokens/s against the bound: the device's memory bandwidth (a large device-to-device copy in the
   same run) ÷ the bytes read per token (the weights, in their dtype, and the KV cache of the context);
2. n = 8 × 64 new tokens from a 1,000-token prefix: the engine (prefill once, fork to 8 rows, decode with the
   sampler, log-softmax and top-5 alternatives every step) against transformers' generate(num_return_sequences=8,
   output_logits=True) on the same model;
3. a warm re-branch (one token from a child of a path just read, its state in the prefix cache) against a cold one
   (a path nothing has computed); steering's overhead: n = 8 steered beside their unsteered twins against 8 plain;
4. bfloat16 against float32: the same random model's teacher-forced logprobs, the engine's float32 head on the
   bfloat16 body, largest difference and largest per-position KL.
Shapes: Gemma 3 270M (its own config: 18 layers, 640 wide, 262,144 tokens, sliding window 512) and an 8 B model of
Llama 3's shape (32 layers, 4,096 wide, 14,336 MLP, 8 KV heads, 128,256 tokens). Decoding runs without CUDA graphs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def gemma_config(smoke: bool):
    from transformers import Gemma3TextConfig

    if smoke:
        return Gemma3TextConfig(vocab_size=4096, hidden_size=64, intermediate_size=128, num_hidden_layers=6,
                                num_attention_heads=2, num_key_value_heads=1, head_dim=32, sliding_window=32,
                                max_position_embeddings=2048)
    return Gemma3TextConfig(vocab_size=262144, hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
                            num_attention_heads=4, num_key_value_heads=1, head_dim=256, sliding_window=512,
                            max_position_embeddings=32768, rope_theta=1_000_000.0, query_pre_attn_scalar=256)


def llama8b_config(smoke: bool):
    from transformers import LlamaConfig

    if smoke:
        return LlamaConfig(vocab_size=4096, hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048)
    return LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192,
                       rope_theta=500_000.0)


def build(config, device: str, dtype):
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    with torch.device(device):
        lm = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return lm.eval()


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bandwidth(device: str) -> float:
    """Bytes a second: a device-to-device copy of a large buffer (read once, written once), best of five."""
    import torch

    n = (1 << 30) if device.startswith("cuda") else (1 << 26)
    a = torch.empty(n, dtype=torch.uint8, device=device)
    b = torch.empty_like(a)
    best = float("inf")
    for _ in range(5):
        sync(device)
        t = time.perf_counter()
        b.copy_(a)
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n / best


def engine_for(lm, budget: str = "8GiB"):
    from loomwork.engine.kv_cache import PrefixCache
    from loomwork.engine.torch_engine import TorchEngine

    return TorchEngine(lm, kv=PrefixCache(budget))


def decode(engine, prefix: list[int], n: int, steps: int, steer=None) -> tuple[float, int]:
    """The engine's generation loop without text: prefill, fork to n rows (or n steered beside n twins), then per
    step log-softmax, the sampler with its KL, top-5 alternatives, one step. Seconds and tokens made."""
    import torch

    from loomwork.backends.base import SamplingParams
    from loomwork.engine import sampler

    params = SamplingParams(n=n, max_tokens=steps, seed=0)
    gen = engine.generator(0)
    device = str(engine.device)
    sync(device)
    t = time.perf_counter()
    with torch.inference_mode():
        if steer:
            cache, logits = engine.steered_start(prefix, n, steer, False)
            hooks = engine.steered(steer, lambda: n)
            hooks.__enter__()
        else:
            cache, last = engine.prefill(prefix, len(prefix) - 1)
            logits = last[-1:].expand(n, -1)
            engine.fork(cache, n)
        try:
            for _ in range(steps):
                lp = torch.log_softmax(logits, -1)
                chosen, _kl = sampler.sample(torch, lp[:n], params, None, gen)
                lp[:n].topk(5, dim=-1)
                logits = engine.step(torch.cat([chosen, chosen]) if steer else chosen, cache)
            sync(device)
        finally:
            if steer:
                hooks.__exit__(None, None, None)
    return time.perf_counter() - t, n * steps


def generate_baseline(lm, prefix: list[int], n: int, steps: int, device: str) -> float:
    import torch

    ids = torch.tensor([prefix], device=device)
    sync(device)
    t = time.perf_counter()
    with torch.inference_mode():
        out = lm.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, max_new_tokens=steps,
                          min_new_tokens=steps, num_return_sequences=n, output_logits=True,
                          return_dict_in_generate=True, pad_token_id=0)
        for step in out.logits:
            torch.log_softmax(step.float(), -1).topk(5, dim=-1)
    sync(device)
    return time.perf_counter() - t


def weights_bytes(lm) -> int:
    return sum(p.numel() * p.element_size() for p in lm.parameters())


def kv_bytes_per_token(config, dtype_bytes: int) -> int:
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * dtype_bytes


def run_shape(name: str, config, device: str, smoke: bool) -> dict:
    import torch

    from loomwork.levers.steering import Steer

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    lm = build(config, device, dtype)
    engine = engine_for(lm)
    rng = torch.Generator().manual_seed(1)
    path = 1000 if not smoke else 200
    prefix = torch.randint(10, config.vocab_size, (path,), generator=rng).tolist()
    decode(engine, prefix[:32], 1, 4)  # warm-up: kernels, allocator
    out: dict = {"model": name, "device": device, "dtype": str(dtype).removeprefix("torch."),
                 "weights_bytes": weights_bytes(lm)}
    # 1. batch 1
    seconds, tokens = decode(engine, prefix[:64], 1, 32 if smoke else 128)
    per_token = weights_bytes(lm) + kv_bytes_per_token(config, 2 if dtype != torch.float32 else 4) * 128
    bw = bandwidth(device)
    out["batch1"] = {"tok_s": tokens / seconds, "bandwidth_GBs": bw / 1e9, "bytes_per_token": per_token,
                     "bound_tok_s": bw / per_token, "share_of_bound": tokens / seconds / (bw / per_token)}
    # 2. n = 8 x 64 from the 1,000-token prefix, a path nothing has computed, against generate
    fresh = [prefix[0] + 1] + prefix[1:]
    engine_s, made = decode(engine, fresh, 8, 64 if not smoke else 16)
    gen_s = generate_baseline(lm, prefix, 8, 64 if not smoke else 16, device)
    out["branch"] = {"engine_s": engine_s, "generate_s": gen_s, "ratio": gen_s / engine_s, "tokens": made}
    # 3. re-branch warm (the path was just read) vs cold; steering's overhead
    warm, _ = decode(engine, fresh + [7], 1, 1)
    cold, _ = decode(engine, [prefix[0] + 2] + prefix[1:] + [7], 1, 1)
    vec = tuple(float(x) for x in torch.randn(config.hidden_size, generator=rng))
    steer = [Steer(name="v", coef=2.0, layer=config.num_hidden_layers // 2, vector=vec)]
    plain_s, _ = decode(engine, prefix[:64], 8, 32)
    steered_s, _ = decode(engine, prefix[:64], 8, 32, steer)
    out["rebranch"] = {"warm_s": warm, "cold_s": cold, "ratio": warm / cold}
    out["steering"] = {"plain_s": plain_s, "steered_s": steered_s, "overhead": steered_s / plain_s}
    out["prefix_cache"] = engine.cache_stats()
    del engine, lm
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return out


def precision(config, device: str) -> dict:
    """bfloat16 body with the engine's float32 head, against float32, on the same random weights."""
    import torch

    from loomwork.engine.torch_engine import float32_head

    ref = build(config, device, torch.float32)
    low = build(config, device, torch.bfloat16)
    low.load_state_dict({k: v.to(torch.bfloat16) for k, v in ref.state_dict().items()})
    float32_head(low)
    ids = torch.randint(10, config.vocab_size, (1, 256), generator=torch.Generator().manual_seed(2)).to(device)
    with torch.inference_mode():
        a = torch.log_softmax(ref(input_ids=ids).logits[0].double(), -1)
        b = torch.log_softmax(low(input_ids=ids).logits[0].double(), -1)
    picked = ids[0, 1:, None]
    diff = (a[:-1].gather(-1, picked) - b[:-1].gather(-1, picked)).abs()
    return {"max_logprob_diff": float(diff.max()), "mean_logprob_diff": float(diff.mean()),
            "max_kl_per_position": float((a.exp() * (a - b)).sum(-1).max())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU: checks the code, measures nothing")
    ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "gpu-bench.json"))
    ap.add_argument("--shapes", default="gemma,llama8b")
    args = ap.parse_args()
    import torch

    device = "cpu" if args.smoke or not torch.cuda.is_available() else "cuda:0"
    results = {"device": torch.cuda.get_device_name(0) if device != "cpu" else "cpu", "torch": torch.__version__,
               "smoke": args.smoke, "shapes": []}
    configs = {"gemma": ("Gemma 3 270M shape", gemma_config), "llama8b": ("Llama 3 8B shape", llama8b_config)}
    for key in args.shapes.split(","):
        name, make = configs[key]
        print(f"== {name} on {device}", flush=True)
        entry = run_shape(name, make(args.smoke), device, args.smoke)
        if key == "gemma":
            entry["bf16_vs_fp32"] = precision(make(args.smoke), device)
        results["shapes"].append(entry)
        print(json.dumps(entry, indent=1), flush=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
