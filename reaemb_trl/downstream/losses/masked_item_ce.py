"""Cloze objective: cross-entropy over the whole catalogue at randomly masked positions (BERT4Rec)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_item_ce(model, sequences: torch.Tensor, mask_prob: float, generator: torch.Generator) -> torch.Tensor:
    """Mask each real item with probability `mask_prob` (at least one per row) and predict it."""
    real = sequences != 0
    masked = (torch.rand(sequences.shape, generator=generator) < mask_prob) & real
    # A row with nothing masked still trains: its last real item becomes the [MASK], as at inference.
    last = real.sum(1) - 1
    rows = torch.arange(len(sequences))
    masked[rows, last] |= ~masked.any(1)
    inputs = sequences.masked_fill(masked, model.mask_id)
    logits = model(inputs)[masked] @ model.item_table.all_items().T
    logits[:, 0] = float("-inf")
    return F.cross_entropy(logits, sequences[masked])
