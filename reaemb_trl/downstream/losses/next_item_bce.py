"""Next-item binary cross-entropy with one sampled negative per position (SASRec, GRU4Rec)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def next_item_bce(model, inputs: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """Mean over real positions of BCE(target scored high) + BCE(negative scored low); `targets` 0 = padding."""
    hidden = model(inputs)
    positive = (hidden * model.item_table(targets)).sum(-1)
    negative = (hidden * model.item_table(negatives)).sum(-1)
    real = targets != 0
    losses = (F.binary_cross_entropy_with_logits(positive, torch.ones_like(positive), reduction="none")
              + F.binary_cross_entropy_with_logits(negative, torch.zeros_like(negative), reduction="none"))
    return losses[real].mean()
