"""Test and benchmark helpers: tiny decoders with locally built tokenizers, the bundled MiniLM and a short LRCL run
of it (nothing is downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

# A small corpus of catalogue-like words so the BPE merges are realistic; bytes cover every other string.
_CORPUS = (
    "title is Pilot G2 Gel Pen; brand is Pilot; categories is Office Products, Writing, Pens; price is 9.99\n"
    "title is Stapler; brand is Swingline; description is A sturdy desktop stapler for the office.\n"
    "Toy Story 1995 Animation Children's Comedy GoldenEye Action Adventure Thriller Drama Romance\n"
    "Represent this item for recommendation. The item: paper, notebook, binder, ink, toner, printer, label.\n"
) * 4

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_tokenizer(vocab_size: int = 400):
    """A byte-level BPE tokenizer with Qwen-style special tokens and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS.splitlines(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        additional_special_tokens=["<|im_start|>"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_decoder(
    arch: str = "qwen2",
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int | None = None,
    vocab_size: int | None = None,
    seed: int = 0,
    tokenizer=None,
):
    """A randomly initialised Qwen2 or Llama causal LM and its tokenizer, in float32."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    tokenizer = tokenizer if tokenizer is not None else build_tiny_tokenizer()
    config_cls = {"qwen2": Qwen2Config, "llama": LlamaConfig}[arch]
    config = config_cls(
        vocab_size=vocab_size or len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.eval()
    return model, tokenizer


def save_tiny_decoder(directory: str | os.PathLike, **kwargs) -> Path:
    """Build a tiny decoder and save it with its tokenizer, so code paths that load from a folder are exercised."""
    directory = Path(directory)
    model, tokenizer = build_tiny_decoder(**kwargs)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def short_minilm_lrcl_config(dataset_dir, output_dir, seed: int = 0):
    """The short real LRCL run the tests and `benchmarks/bench_crrl_heldout.py` start CRRL from: the bundled MiniLM,
    20 steps x 8 items, max length 48, LoRA on every attention and dense layer."""
    from .lrcl import LRCLConfig

    return LRCLConfig(model_name_or_path="bundled-minilm", dataset_dir=str(dataset_dir), output_dir=str(output_dir),
                      lora_target_modules=["query", "key", "value", "dense"], max_length=48,
                      per_device_train_batch_size=8, gradient_accumulation_steps=1, max_steps=20,
                      learning_rate=1e-3, warmup_steps=3, eval_steps=0, eval_items=256, save_steps=0,
                      report_to="none", seed=seed)
