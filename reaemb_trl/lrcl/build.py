"""What LRCL trains, built from its config: the embedder (backbone + thought module, LoRA / QLoRA) and the optimizer."""

from __future__ import annotations

import torch
from torch import nn

from .losses import LOSSES
from .lrcl_config import LRCLConfig


def build_embedder(config: LRCLConfig):
    """The embedder the config describes: backbone + thought module, LoRA (on a 4-bit backbone for QLoRA)."""
    from ..embedder import LatentReasoningEmbedder

    embedder = LatentReasoningEmbedder.from_backbone(config.model_name_or_path, config.embedder_options())
    embedder.config.similarity = LOSSES[config.loss].similarity  # saved with the model: export and CRRL read it
    if config.no_thought:
        # Frozen, so DDP does not wait for gradients that never come (config.use_thought is False: export embeds
        # the same way).
        for param in embedder.thought_module.parameters():
            param.requires_grad_(False)
    if config.activation_checkpointing:
        embedder.backbone_model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False})
    return embedder


def build_optimizer(params: list[nn.Parameter], config: LRCLConfig) -> torch.optim.Optimizer:
    """AdamW from torch, or bitsandbytes' 8-bit / paged AdamW (paged falls back to plain on CPU)."""
    kwargs = {"lr": config.learning_rate, "weight_decay": config.weight_decay}
    if config.optim == "adamw_torch":
        return torch.optim.AdamW(params, **kwargs)
    import bitsandbytes as bnb

    optimizer_cls = {"adamw_8bit": bnb.optim.AdamW8bit, "paged_adamw_8bit": bnb.optim.PagedAdamW8bit,
                     "paged_adamw_32bit": bnb.optim.PagedAdamW32bit}[config.optim]
    return optimizer_cls(params, **kwargs)
