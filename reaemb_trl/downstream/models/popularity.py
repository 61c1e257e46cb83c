"""Popularity baseline: every user gets the items ranked by their training counts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .base import RecommenderConfig


@dataclass
class PopularityConfig(RecommenderConfig):
    """No settings of its own."""


class Popularity(nn.Module):
    """No parameters to train (the trainer skips training), no item table, the same ranking for every seed."""

    config_class = PopularityConfig
    uses_table = False
    deterministic = True
    run_name = "popularity"
    context_length = 1  # reads no history; one position keeps the trainer's batching uniform

    def __init__(self, train_popularity: np.ndarray):
        super().__init__()
        self.register_buffer("counts", torch.as_tensor(train_popularity, dtype=torch.float32))

    @classmethod
    def from_config(cls, config, settings: PopularityConfig, item_table, num_items: int,
                    train_popularity: np.ndarray) -> "Popularity":
        return cls(train_popularity)

    def score_all(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.counts.expand(len(inputs), -1)

    def score_candidates(self, inputs: torch.Tensor, lengths: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        return self.counts[candidates]
