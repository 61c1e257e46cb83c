"""The temperature scalar a contrastive loss owns: trained with the model when learnable, clamped from below."""

from __future__ import annotations

import torch
from torch import nn


class Temperature(nn.Module):
    def __init__(self, initial: float, learnable: bool = True, minimum: float = 1e-3):
        super().__init__()
        if initial <= 0:
            raise ValueError(f"temperature must be > 0, got {initial}")
        value = torch.tensor(float(initial))
        if learnable:
            self.value = nn.Parameter(value)
        else:
            # A buffer, so a fixed temperature is still saved with the checkpoint.
            self.register_buffer("value", value)
        self.minimum = minimum

    def forward(self) -> torch.Tensor:
        return self.value.clamp(min=self.minimum)
