"""Popularity baseline: every user gets the items ranked by their training counts."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class Popularity(nn.Module):
    context_length = 1  # reads no history; one position keeps the trainer's batching uniform

    def __init__(self, train_popularity: np.ndarray):
        super().__init__()
        self.register_buffer("counts", torch.as_tensor(train_popularity, dtype=torch.float32))

    def score_all(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.counts.expand(len(inputs), -1)

    def score_candidates(self, inputs: torch.Tensor, lengths: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        return self.counts[candidates]
