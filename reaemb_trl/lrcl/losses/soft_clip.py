"""The reference LRCL loss: CLIP-style, symmetric, soft targets from the within-view similarities, no L2 norm."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .temperature import Temperature


class SoftCLIPLoss(nn.Module):
    """logits = X Yᵀ / τ, targets = softmax((X Xᵀ + Y Yᵀ) / 2τ); cross-entropy both ways, averaged.

    Items that look alike within each view are soft positives, so near-duplicates are not pushed apart.
    """

    default_temperature = 1.0
    similarity = "dot"  # raw dot products: what the embeddings are trained to be compared with

    def __init__(self, temperature: float | None = None, learnable_temperature: bool = True,
                 min_temperature: float = 1e-3):
        super().__init__()
        initial = self.default_temperature if temperature is None else temperature
        self.temperature = Temperature(initial, learnable_temperature, min_temperature)

    def forward(self, view_a: torch.Tensor, view_b: torch.Tensor) -> torch.Tensor:
        tau = self.temperature()
        logits = view_a @ view_b.T / tau
        targets = F.softmax((view_a @ view_a.T + view_b @ view_b.T) / (2 * tau), dim=-1)
        return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets.T))
