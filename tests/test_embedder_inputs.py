"""Prompt layout and bad inputs of the embedder."""

import logging

import pytest
import torch

from reaemb_trl.embedder import LatentReasoningConfig, LatentReasoningEmbedder
from reaemb_trl.embedder.loading import LoadingOptions
from reaemb_trl.errors import InputError
from reaemb_trl.testing import build_tiny_decoder


@pytest.fixture(scope="module")
def embedder():
    model, tokenizer = build_tiny_decoder("qwen2")
    return LatentReasoningEmbedder.from_backbone(model, LoadingOptions(num_thought_tokens=2, max_length=40,
                                                                       padding_side="left"), tokenizer=tokenizer)


def test_prompt_layout_chat_template_thoughts_then_eos(embedder, tiny_tokenizer):
    ids = embedder.tokenize(["title is Stapler"])["input_ids"][0].tolist()
    text = embedder.tokenizer.decode(ids)
    assert text.startswith("<|im_start|>user\nRepresent this item for recommendation.\ntitle is Stapler<|im_end|>")
    assert text.endswith("<|im_start|>assistant\n<|Thought_1|><|Thought_2|><|im_end|>")
    assert ids[-3:] == [*embedder.thought_token_ids, embedder.tokenizer.eos_token_id]
    # The caller's tokenizer is left as it was; the embedder's copy grew by the two thought tokens.
    assert "<|Thought_1|>" not in tiny_tokenizer.get_vocab()
    assert len(embedder.tokenizer) == len(tiny_tokenizer) + 2
    assert embedder.backbone_model.get_input_embeddings().weight.shape[0] == len(embedder.tokenizer)


def test_empty_text_names_the_item(embedder):
    with pytest.raises(InputError, match="index 1 is empty"):
        embedder.tokenize(["title is Stapler", "  "])
    with pytest.raises(InputError, match="index 0 is empty"):
        embedder.encode([""], show_progress=False)


def test_long_text_truncated_with_one_warning_per_embedder(embedder, caplog):
    long_texts = ["title is Stapler; description is " + "paper binder ink " * 40] * 3 + ["title is Pen"]
    with caplog.at_level(logging.WARNING, logger="reaemb_trl.embedder.prompts"):
        batch = embedder.tokenize(long_texts)
    records = [r for r in caplog.records if "truncated" in r.getMessage()]
    assert len(records) == 1 and records[0].getMessage().startswith("3 of 4 item texts exceed max_length=40")
    assert batch["input_ids"].shape[1] == 40
    for row in batch["input_ids"][:3]:  # thoughts and EOS survive truncation
        assert row[-3:].tolist() == [*embedder.thought_token_ids, embedder.tokenizer.eos_token_id]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="reaemb_trl.embedder.prompts"):
        embedder.tokenize(["title is Pen"])
        embedder.encode(long_texts, show_progress=False)  # a trainer's next step: no second warning
    assert not caplog.records


def test_set_max_length(embedder):
    long_text = "title is Stapler; description is " + "paper binder ink " * 40
    embedder.set_max_length(36)
    try:
        assert embedder.config.max_length == 36
        assert embedder.tokenize([long_text])["input_ids"].shape[1] == 36
        with pytest.raises(InputError, match="max_length=4 leaves no room"):
            embedder.set_max_length(4)
        with pytest.raises(InputError, match="exceeds the backbone's 2048 positions"):
            embedder.set_max_length(4096)
        assert embedder.tokenize([long_text])["input_ids"].shape[1] == 36  # a refused value changes nothing
    finally:
        embedder.set_max_length(40)


def test_max_length_too_small_for_the_frame():
    model, tokenizer = build_tiny_decoder("llama")
    with pytest.raises(InputError, match="max_length=8 leaves no room"):
        LatentReasoningEmbedder.from_backbone(model, LoadingOptions(max_length=8), tokenizer=tokenizer)


def test_malformed_batches_are_refused(embedder):
    batch = embedder.tokenize(["title is Stapler", "title is Pen"])
    no_thought = batch["input_ids"].clone()
    no_thought[1, -2] = embedder.tokenizer.eos_token_id
    with pytest.raises(InputError, match="row 1: expected 2 thought token"):
        embedder(input_ids=no_thought, attention_mask=batch["attention_mask"])
    swapped = batch["input_ids"].clone()
    swapped[:, [-3, -2]] = swapped[:, [-2, -3]]
    with pytest.raises(InputError, match="consecutive and in order"):
        embedder(input_ids=swapped, attention_mask=batch["attention_mask"])
    holes = batch["attention_mask"].clone()
    holes[0, -6] = 0
    with pytest.raises(InputError, match="contiguous"):
        embedder(input_ids=batch["input_ids"], attention_mask=holes)
    with pytest.raises(InputError, match="path must be one of"):
        embedder(**batch, execution_path="quick")
    prefix = embedder.encode_prefix(**batch)
    with pytest.raises(ValueError, match=r"thoughts must have shape \(6, 2, 64\)"):
        embedder.embed_with_thoughts(prefix, torch.zeros(2, 2, 64), group_size=3)


def test_config_validation_and_backbone_arguments(tiny_tokenizer):
    with pytest.raises(InputError, match="pooling"):
        LatentReasoningConfig(pooling="max")
    with pytest.raises(InputError, match="num_thought_tokens"):
        LatentReasoningConfig(num_thought_tokens=0)
    model, _ = build_tiny_decoder("qwen2", tokenizer=tiny_tokenizer)
    with pytest.raises(InputError, match="needs its tokenizer"):
        LatentReasoningEmbedder.from_backbone(model)
    with pytest.raises(InputError, match="quantization is applied while loading"):
        LatentReasoningEmbedder.from_backbone(model, LoadingOptions(quantization="4bit"), tokenizer=tiny_tokenizer)
