"""GRU4Rec: a GRU over the item sequence (Hidasi et al., 2016), trained like SASRec."""

from __future__ import annotations

import torch
from torch import nn

from .base import SequentialRecommender


class GRU4Rec(SequentialRecommender):
    def __init__(self, item_table: nn.Module, hidden_size: int = 128, max_items: int = 200, num_layers: int = 1,
                 dropout: float = 0.2):
        super().__init__()
        self.item_table = item_table
        self.context_length = max_items
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(hidden_size, hidden_size, num_layers=num_layers, batch_first=True)
        self.dense = nn.Linear(hidden_size, hidden_size)

    @classmethod
    def from_config(cls, config, item_table: nn.Module, num_items: int) -> "GRU4Rec":
        return cls(item_table, config.hidden_size, config.max_items, 1, config.dropout)  # one GRU layer

    def forward(self, item_ids: torch.Tensor) -> torch.Tensor:
        # The GRU reads left to right, so the right padding never reaches a real position's state.
        states, _ = self.gru(self.dropout(self.item_table(item_ids)))
        return self.dense(states)
