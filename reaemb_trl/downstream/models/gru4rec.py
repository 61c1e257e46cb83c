"""GRU4Rec: a GRU over the item sequence (Hidasi et al., 2016), trained like SASRec."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .base import RecommenderConfig, SequentialRecommender


@dataclass
class GRU4RecConfig(RecommenderConfig):
    number_rules = {"num_layers": ">= 1"}

    num_layers: int = field(default=1, metadata={"help": "Stacked GRU layers."})


class GRU4Rec(SequentialRecommender):
    config_class = GRU4RecConfig

    def __init__(self, item_table: nn.Module, hidden_size: int = 128, max_items: int = 200, num_layers: int = 1,
                 dropout: float = 0.2):
        super().__init__()
        self.item_table = item_table
        self.context_length = max_items
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(hidden_size, hidden_size, num_layers=num_layers, batch_first=True)
        self.dense = nn.Linear(hidden_size, hidden_size)

    @classmethod
    def from_config(cls, config, settings: GRU4RecConfig, item_table: nn.Module, num_items: int,
                    train_popularity) -> "GRU4Rec":
        return cls(item_table, config.hidden_size, config.max_items, settings.num_layers, config.dropout)

    def forward(self, item_ids: torch.Tensor) -> torch.Tensor:
        # The GRU reads left to right, so the right padding never reaches a real position's state.
        states, _ = self.gru(self.dropout(self.item_table(item_ids)))
        return self.dense(states)
