"""The temperature scalar a contrastive loss owns: trained with the model when learnable, clamped from below."""

from __future__ import annotations

import torch
from torch import nn


class Temperature(nn.Module):
    def __init__(self, initial: float, learnable: bool = True, minimum: float = 1e-3):
        super().__init__()
        if initial <= 0:
            raise ValueError(f"temperature must be > 0, got {initial}")
        # Shape [1], not a 0-dim scalar: DeepSpeed broadcasts every parameter as bytes (`.view(torch.uint8)`), which a
        # 0-dim tensor refuses.
        value = torch.tensor([float(initial)])
        if learnable:
            self.value = nn.Parameter(value)
        else:
            # A buffer, so a fixed temperature is still saved with the checkpoint.
            self.register_buffer("value", value)
        self.minimum = minimum

    def forward(self) -> torch.Tensor:
        """The clamped temperature as a 0-dim tensor."""
        return self.value.clamp(min=self.minimum)[0]
