"""A tiny random causal LM with a character tokenizer, for fast and exact checks of the hf backend."""

from __future__ import annotations

import string

CHARS = list(" " + string.ascii_letters + string.digits + ".,!?'\n")


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<s>": 0, "</s>": 1, **{c: i + 2 for i, c in enumerate(CHARS)}}
    vocab["<pad>"] = len(vocab)
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))  # no merges: every character is its own token
    tk.decoder = decoders.Fuse()
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def build_tiny_lm(seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=0, eos_token_id=1, tie_word_embeddings=False)
    lm = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # sharpen the random logits a little so samples are not uniform noise
        lm.lm_head.weight.mul_(8.0)
    return lm, tok


MERGES = [("t", "h"), ("h", "e"), ("th", "e"), (" ", "t"), ("e", "r"), ("a", "n")]


def build_merging_tokenizer():
    """Characters plus a few merges ("th", "he", "the", " t", "er", "an"): a generated "t" then "he" re-reads as
    "the", one token, so re-tokenised text can differ from the ids a model produced."""
    from tokenizers import Tokenizer, decoders, models, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<s>": 0, "</s>": 1, **{c: i + 2 for i, c in enumerate(CHARS)}}
    for a, b in MERGES:
        vocab[a + b] = len(vocab)
    vocab["<pad>"] = len(vocab)
    tk = Tokenizer(models.BPE(vocab=vocab, merges=MERGES))
    tk.decoder = decoders.Fuse()
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def build_tiny_gemma(seed: int = 0, window: int = 8):
    """A tiny random Gemma 3: sliding-window layers (window 8, so short test paths already pass it) between full
    ones, as in the real model, with the merging tokenizer."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    tok = build_merging_tokenizer()
    torch.manual_seed(seed)
    cfg = Gemma3TextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=window,
                           max_position_embeddings=512, bos_token_id=0, eos_token_id=1, pad_token_id=len(tok) - 1,
                           layer_types=["sliding_attention", "sliding_attention", "full_attention"])
    lm = Gemma3ForCausalLM(cfg).eval()
    with torch.no_grad():
        lm.lm_head.weight.mul_(4.0)
    return lm, tok
