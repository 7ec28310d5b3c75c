"""The engine level: token ids in, logits out (nanochat's discipline). Nothing here knows text.

- torch_engine.py: one transformers model, its states in the radix prefix cache, prefill in chunks, a state forked
  to n rows, decoding steps, rows dropped and kept, steering hooks and twin rows, activations;
- llama_engine.py: one GGUF model through llama.cpp's low-level API, the path decoded once and forked to a
  sequence per sample;
- sampler.py: the sampler with its decoding KL, over torch tensors or numpy rows;
- device.py: where torch models run and in what precision, checked before anything loads;
- kv_cache.py: the radix prefix cache of key/value states, within its memory budget;
- model_thread.py: the process's one thread for model work (urgent first; background work that pauses);
- packed_linear.py: products on weights packed once for oneDNN (the CPU path).

``Engine`` is what the torch text level (backends/hf.py, hf_score.py) asks of an engine; the llama model
(backends/llama.py) asks its engine the same things in llama.cpp's terms (sequences rather than caches).
"""

from __future__ import annotations

import threading
from typing import Any, Protocol


class Engine(Protocol):
    window: int | None  # the model's context window in tokens, if it has one

    def new_state(self, ids: list[int], limit: int, variant: tuple = ()) -> tuple[Any, int]: ...

    def keep_state(self, ids: list[int], cache: Any, done: int, variant: tuple = ()) -> None: ...

    def prefill(self, ids: list[int], first: int, stop: threading.Event | None = None) -> tuple[Any, Any]: ...

    def fork(self, cache: Any, n: int) -> None: ...

    def select(self, cache: Any, rows: list[int]) -> None: ...

    def step(self, feed: Any, cache: Any) -> Any: ...

    def keep_row(self, ids: list[int], fed: list[int], cache: Any, r: int, variant: tuple | None = ()) -> None: ...

    def forward(self, rows: list[list[int]], cache: Any = None, logits_to_keep: Any = None) -> Any: ...

    def full_logprobs(self, prefix_ids: list[int], ids: list[int]) -> Any: ...

    def cache_stats(self) -> dict | None: ...
