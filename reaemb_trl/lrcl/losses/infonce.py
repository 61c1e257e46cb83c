"""Symmetric InfoNCE on L2-normalised embeddings: each view must pick its partner among the batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .temperature import Temperature


class InfoNCELoss(nn.Module):
    default_temperature = 0.05
    similarity = "cosine"  # both views are L2-normalised: what the embeddings are trained to be compared with

    def __init__(self, temperature: float | None = None, learnable_temperature: bool = False,
                 min_temperature: float = 1e-3):
        super().__init__()
        initial = self.default_temperature if temperature is None else temperature
        self.temperature = Temperature(initial, learnable_temperature, min_temperature)

    def forward(self, view_a: torch.Tensor, view_b: torch.Tensor) -> torch.Tensor:
        logits = F.normalize(view_a, dim=-1) @ F.normalize(view_b, dim=-1).T / self.temperature()
        labels = torch.arange(logits.shape[0], device=logits.device)
        return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
