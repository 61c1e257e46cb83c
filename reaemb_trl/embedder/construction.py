"""How a `LatentReasoningEmbedder` is built: around a backbone (`from_backbone`) or from a saved folder
(`from_pretrained`). Both prepare the backbone the same way (thought tokens added, QLoRA's k-bit preparation), so a
saved folder reloads to the model that was saved; the folder's files are read by `serialization`'s checked readers.
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any

import torch
from peft import get_peft_model, prepare_model_for_kbit_training
from transformers import BitsAndBytesConfig

from ..errors import InputError
from .backbone import (
    BUNDLED_BACKBONES,
    add_thought_tokens,
    is_causal_config,
    load_backbone,
    load_tokenizer,
    lora_config,
)
from .configuration import LatentReasoningConfig
from .loading import LoadingOptions
from .serialization import (
    embedder_folder,
    load_saved_adapter,
    load_saved_backbone,
    load_saved_tokenizer,
    load_thought_weights,
    read_config,
    require_files,
)

logger = logging.getLogger(__name__)


def prepare_backbone(backbone, tokenizer, config: LatentReasoningConfig, quantization: BitsAndBytesConfig | None):
    """The backbone with the thought tokens in its vocabulary (and the tokenizer's), prepared for QLoRA when
    quantised."""
    add_thought_tokens(backbone, tokenizer, config.thought_tokens)
    if quantization is not None:
        # No gradient checkpointing: it would switch the KV cache off, and the fast path lives on the cache.
        backbone = prepare_model_for_kbit_training(backbone, use_gradient_checkpointing=False)
    return backbone


def build_from_backbone(cls, model_or_path, options: LoadingOptions | None, tokenizer,
                        backbone_name_or_path: str | None):
    """`cls.from_backbone` (its docstring says what each argument does)."""
    options = options if options is not None else LoadingOptions()
    quantization = options.quantization_config()
    if isinstance(model_or_path, (str, os.PathLike)):
        path = str(model_or_path)
        tokenizer = (tokenizer if tokenizer is not None else
                     load_tokenizer(path, options.gguf_file, options.model_revision, options.trust_remote_code))
        backbone = load_backbone(path, quantization, options.dtype, options.gguf_file, options.model_revision,
                                 options.attn_implementation, options.trust_remote_code)
        portable = path in BUNDLED_BACKBONES or not Path(path).is_dir()  # a bundled name or a hub id
        name = backbone_name_or_path or (path if portable else str(Path(path).resolve()))
    else:
        if quantization is not None:
            raise InputError("quantization is applied while loading: pass the backbone as a folder or hub id")
        if tokenizer is None:
            raise InputError("a backbone passed as a model object needs its tokenizer (tokenizer=...)")
        backbone = model_or_path
        name = backbone_name_or_path or backbone.name_or_path or None
    tokenizer = copy.deepcopy(tokenizer)  # thought tokens are added: leave the caller's tokenizer as it was
    backbone_config = backbone.config.get_text_config()
    position_limit = getattr(backbone_config, "max_position_embeddings", None)
    max_length = options.max_length
    if position_limit and max_length > position_limit:  # e.g. BERT's 512 absolute positions
        logger.warning("max_length=%d exceeds the backbone's %d positions: using %d", max_length,
                       position_limit, position_limit)
        max_length = position_limit
    config = LatentReasoningConfig(
        **options.embedder_settings(),
        backbone_name_or_path=name,
        is_causal=is_causal_config(backbone.config),
        hidden_size=backbone_config.hidden_size,
        max_length=max_length,
        padding_side=options.padding_side or tokenizer.padding_side,
        quantization=quantization.to_dict() if quantization is not None else None,
    )
    backbone = prepare_backbone(backbone, tokenizer, config, quantization)
    if options.use_peft:
        adapter = lora_config(options.lora_settings(), backbone)
        backbone = get_peft_model(backbone, adapter)
        config.lora = {"r": adapter.r, "lora_alpha": adapter.lora_alpha, "lora_dropout": adapter.lora_dropout,
                       "target_modules": sorted(adapter.target_modules),
                       "layers_to_transform": adapter.layers_to_transform}
    embedder = cls(config)
    embedder.to(backbone.get_input_embeddings().weight.device)
    embedder._attach(backbone, tokenizer)
    with torch.no_grad():
        mean_row = backbone.get_input_embeddings().weight[: min(embedder.thought_token_ids)].float().mean(0)
        embedder.thought_embeddings.copy_(mean_row.expand_as(embedder.thought_embeddings))
    embedder.thought_module.reset_parameters(embedder._value_scale(), torch.Generator().manual_seed(options.seed))
    return embedder


def load_from_folder(cls, name_or_path, is_trainable: bool, dtype: Any, revision: str | None,
                     cache_dir: str | os.PathLike | None):
    """`cls.from_pretrained` (its docstring says what each argument does)."""
    folder = embedder_folder(name_or_path, revision, cache_dir)
    require_files(folder)
    config = read_config(folder)
    tokenizer = load_saved_tokenizer(folder)
    quantization = BitsAndBytesConfig.from_dict(config.quantization) if config.quantization else None
    backbone = load_saved_backbone(config, folder, quantization, dtype)
    backbone = prepare_backbone(backbone, tokenizer, config, quantization)
    backbone = load_saved_adapter(backbone, folder, is_trainable)
    config._name_or_path = str(folder)
    embedder = cls(config)
    load_thought_weights(embedder, folder)
    embedder.to(backbone.get_input_embeddings().weight.device)
    embedder._attach(backbone, tokenizer)
    return embedder
