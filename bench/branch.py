"""Where a loom spends its time: sampling from a long path, re-branching from a node just expanded, decoding.

    .venv/bin/python bench/branch.py [--model gemma-3-270m] [--path-tokens 1000] [--repeats 3]

The path is the first --path-tokens tokens of the demo loom's deepest path (real prose). Everything runs in one
process, so every ratio compares figures measured together:

1. n=8 x 64 new tokens from the path: loomwork's hf engine (prefill once, n rows share it) vs transformers
   generate(num_return_sequences=8, output_logits=True), which prefills the prompt 8 times, on the same model
   with transformers' own products; and generate again on the engine's packed products (what sharing alone gains). Each run starts from
   a path nothing has computed (a different first line), so the prefix cache does not flatter the engine.
2. Warm re-branch: expand (n=1, 1 token) a child of the node just expanded, vs the same on a path nothing has
   computed; and the same reuse for scoring the child (intervention bits) and the next-token view.
3. Batch-1 decode tokens/s against the physical limit: this machine's memory bandwidth (numpy, measured here)
   divided by the bytes read per token (every weight once, plus the keys and values of the context).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
DEMO = ROOT.parent / "shared" / "fixtures" / "pyloom" / "loom_demo.json"


def demo_path_text() -> str:
    """The text of the demo loom's deepest path."""
    data = json.loads(DEMO.read_text())
    best: list[str] = []

    def walk(node, texts):
        nonlocal best
        texts = texts + [node.get("text", "")]
        if len(texts) > len(best):
            best = texts
        for child in node.get("children", []):
            walk(child, texts)

    for root in data["roots"] if "roots" in data else [data["root"] if "root" in data else data]:
        walk(root, [])
    return "".join(best)


def clock(coro):
    """Seconds to run a coroutine to its end, and its result."""
    t = time.perf_counter()
    out = asyncio.run(coro)
    return time.perf_counter() - t, out


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def memory_bandwidth() -> float:
    """Bytes per second read from memory with every core reading: the best of a few passes over a 512 MiB array
    (too big for the caches), summed by torch on all its threads and multiplied by a vector (numpy's BLAS, all
    threads). A single-threaded numpy sum reads about half as fast on this machine and understated the limit."""
    import numpy as np
    import torch

    a = np.ones(128 * 1024 * 1024, dtype=np.float32)
    ta, m, v = torch.from_numpy(a), a.reshape(-1, 1024), np.ones(1024, dtype=np.float32)
    best = 0.0
    for read in (lambda: ta.sum(), lambda: m @ v) * 5:
        t = time.perf_counter()
        read()
        best = max(best, a.nbytes / (time.perf_counter() - t))
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--path-tokens", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-llama", action="store_true", help="Skip the llama engine (the extra 'llama').")
    ap.add_argument("--sections", default="123", help="Which of the three to run (e.g. 2).")
    args = ap.parse_args()

    import torch

    from loomwork.backends.hf import HFBackend

    engine = HFBackend(args.model)
    tok = engine.tok
    ids = tok.encode(demo_path_text(), add_special_tokens=False)[: args.path_tokens]
    body = tok.decode(ids)
    fresh = iter(range(10**6))

    def new_path() -> str:  # a path nothing has computed: its first line differs from every earlier one
        return f"Draft {next(fresh)}.\n{body}"

    print(f"model {args.model}, path {len(engine.encode(new_path()))} tokens, torch threads {torch.get_num_threads()}")

    llama = None
    if not args.no_llama:
        try:
            from loomwork.backends.llama import LlamaBackend

            llama = LlamaBackend(args.model)
        except Exception as exc:  # the extra is optional
            print(f"\n(llama engine skipped: {exc})")
    if "1" in args.sections:
        throughput(engine, llama, new_path, args.model, args.repeats)
    engines = [("hf", engine)] + ([("llama", llama)] if llama is not None else [])
    if "2" in args.sections:
        for name, e in engines:
            rebranch(name, e, new_path, args.repeats)
    if "3" in args.sections:
        bw = memory_bandwidth()
        print(f"\n3. batch-1 decode (memory bandwidth, 512 MiB read by every core: {bw / 1e9:.1f} GB/s)")
        for name, e in engines:
            decode(name, e, bw)


def throughput(engine, llama, new_path, model: str, repeats: int) -> None:
    import torch

    from loomwork.backends import SamplingParams
    from loomwork.engine import packed_linear

    lm, tok = engine.lm, engine.tok
    p8 = SamplingParams(n=8, max_tokens=64, seed=0)

    def generate(tokens: int = 64, prompt: str | None = None):
        x = torch.tensor([engine.encode(prompt or new_path())])
        with torch.inference_mode():
            out = lm.generate(x, do_sample=True, num_return_sequences=8, max_new_tokens=tokens, min_new_tokens=tokens,
                              output_logits=True, return_dict_in_generate=True, pad_token_id=tok.eos_token_id)
            for step in out.logits:
                torch.log_softmax(step.float(), -1).topk(5)
        return 8 * tokens

    # on the engine's model thread, so that both run under the same OpenMP conditions (engine/model_thread.py)
    def on_model_thread(tokens: int = 64, prompt: str | None = None):
        return engine._model_thread.run(lambda: generate(tokens, prompt))

    # warm-up, for both: the piece index the engine builds after loading (1-2 s of CPU), oneDNN's and MKL's first
    # calls for these shapes; then every timed run reads a path nothing has computed
    engine.pieces()
    asyncio.run(engine.complete("A warm-up line.", SamplingParams(n=8, max_tokens=4, seed=0)))
    on_model_thread(4, "A warm-up line.")
    runs = [clock(engine.complete(new_path(), p8)) for _ in range(repeats)]
    ours_s = statistics.median(t for t, _ in runs)
    ours_rate = runs[0][1].completion_tokens / ours_s

    # transformers as it comes: the engine's packed products (engine/packed_linear.py) taken off for the baseline
    with packed_linear.plain_products(lm):
        on_model_thread(4, "A warm-up line.")
        base_s, count = timed(on_model_thread)
    same_s, _ = timed(on_model_thread)  # generate on the engine's packed products: what sharing the prefill alone gains
    base_rate = count / base_s
    print(f"\n1. n=8 x 64 tokens from the path (a path nothing has computed; loomwork: median of {repeats})")
    print(f"  loomwork hf engine      {ours_s:6.1f} s  {ours_rate:6.1f} tok/s  (runs: "
          f"{', '.join(f'{t:.1f}' for t, _ in runs)} s)")
    print(f"  transformers generate   {base_s:6.1f} s  {base_rate:6.1f} tok/s")
    print(f"  ratio (throughput) loomwork / generate: {ours_rate / base_rate:.2f}x")
    print(f"  generate on the engine's packed products {same_s:6.1f} s: ratio {same_s / ours_s:.2f}x")

    if llama is not None:
        from llama_cpp import Llama

        from loomwork.backends.llama import gguf_file

        high = Llama(model_path=str(gguf_file(model)), n_ctx=4096, logits_all=True, verbose=False)

        def sequential():
            prompt, made = new_path(), 0
            for i in range(8):  # the high-level API has no n: one completion after another
                out = high.create_completion(prompt, max_tokens=64, temperature=1.0, logprobs=5, seed=i)
                made += out["usage"]["completion_tokens"]
            return made

        lo_s, done = clock(llama.complete(new_path(), p8))
        hi_s, made = timed(sequential)
        print(f"  llama engine            {lo_s:6.1f} s  {done.completion_tokens / lo_s:6.1f} tok/s")
        print(f"  llama-cpp-python create_completion x 8 (logprobs=5) {hi_s:6.1f} s  {made / hi_s:6.1f} tok/s")
        print(f"  ratio (throughput) llama engine / high-level API: {(done.completion_tokens / lo_s) / (made / hi_s):.2f}x")


def rebranch(name, engine, new_path, repeats) -> None:
    """Expand (n=1, 1 token) a child of the node just expanded vs a path nothing has computed; the same for
    scoring a person's line after the child, and for the next-token view there."""
    from loomwork.backends import SamplingParams

    one = SamplingParams(n=1, max_tokens=1, seed=0)
    times: dict[str, list[float]] = {k: [] for k in ("cold", "warm", "score_cold", "score_warm", "next_cold", "next_warm")}
    for _ in range(repeats):
        times["cold"].append(clock(engine.complete(new_path(), one))[0])
        path = new_path()
        kids = asyncio.run(engine.complete(path, SamplingParams(n=4, max_tokens=24, seed=1)))  # the node just expanded
        child = path + kids.completions[0].text
        times["warm"].append(clock(engine.complete(child, one))[0])
        # what the page does next on that path (the llama engine holds one path: warm ones first, then cold)
        segments = [child, " and then I wrote this line myself."]
        times["score_warm"].append(clock(engine.score_segments(segments, [1]))[0])
        times["next_warm"].append(clock(engine.next_token(child + segments[1], k=10))[0])
        times["score_cold"].append(clock(engine.score_segments([new_path(), segments[1]], [1]))[0])
        times["next_cold"].append(clock(engine.next_token(new_path() + segments[1], k=10))[0])
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n2. re-branch, {name} engine (median of {repeats})")
    for label, key in (("expand n=1, 1 token", ""), ("score a written line", "score_"), ("next-token view", "next_")):
        w, c = med[key + "warm"], med[key + "cold"]
        print(f"  {label:<22} warm {w:6.3f} s  cold {c:6.3f} s  ratio {w / c:.3f}x")
    if hasattr(engine, "cache_stats"):
        s = engine.cache_stats()
        print(f"  cache: {s['entries']} entries, {s['tokens']:,} tokens, {s['bytes'] / 2**20:.0f} MiB "
              f"(peak {s['peak_bytes'] / 2**20:.0f} of {s['budget_bytes'] / 2**20:.0f} MiB), {s['hits']} hits, "
              f"{s['misses']} misses")


def decode(name, engine, bandwidth) -> None:
    """Greedy tokens/s of one sample (65 tokens minus the time of 1, so the prompt does not count) against the
    memory bandwidth divided by the bytes each token reads: every weight once, and the context's keys/values."""
    from loomwork.backends import SamplingParams

    short = "The old lighthouse keeper climbed the stairs and"
    greedy = lambda k: SamplingParams(n=1, max_tokens=k, temperature=0, seed=0)  # noqa: E731
    t1 = min(clock(engine.complete(short, greedy(1)))[0] for _ in range(2))
    t65, done = min((clock(engine.complete(short, greedy(65))) for _ in range(2)), key=lambda r: r[0])
    rate = (done.completion_tokens - 1) / (t65 - t1)
    if name == "hf":
        weights = sum(p.numel() * p.element_size() for p in engine.lm.parameters())
        kv_per_token = sum(2 * layer.self_attn.k_proj.out_features * 4 for layer in engine.lm.model.layers)
    else:  # quantized weights as stored in the file; f16 keys and values
        from loomwork.backends.llama import gguf_file

        weights = gguf_file(engine.model).stat().st_size
        kv_per_token = 18 * 2 * 256 * 2 if "gemma" in engine.model else 30 * 2 * 192 * 2
    per_token = weights + kv_per_token * (len(engine.encode(short)) + 32)
    limit = bandwidth / per_token
    print(f"  {name:<6} {rate:6.1f} tok/s; {per_token / 1e6:5.0f} MB a token, limit {limit:6.1f} tok/s: "
          f"{100 * rate / limit:.0f}% of it")


if __name__ == "__main__":
    main()
