"""SASRec: causal self-attention over the item sequence (Kang & McAuley, 2018)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .base import RecommenderConfig, SequentialRecommender


@dataclass
class SASRecConfig(RecommenderConfig):
    number_rules = {"num_layers": ">= 1", "num_heads": ">= 1", "inner_size": ">= 1"}

    num_layers: int = field(default=2, metadata={"help": "Transformer blocks."})
    num_heads: int = field(default=2, metadata={"help": "Attention heads."})
    inner_size: int = field(default=256, metadata={"help": "Feed-forward width of a transformer block."})


class SASRec(SequentialRecommender):
    config_class = SASRecConfig

    def __init__(self, item_table: nn.Module, hidden_size: int = 128, max_items: int = 200, num_layers: int = 2,
                 num_heads: int = 2, inner_size: int = 256, dropout: float = 0.2):
        super().__init__()
        self.item_table = item_table
        self.context_length = max_items
        self.hidden_size = hidden_size
        self.positions = nn.Embedding(max_items, hidden_size)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(hidden_size, num_heads, inner_size, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(hidden_size)

    @classmethod
    def from_config(cls, config, settings: SASRecConfig, item_table: nn.Module, num_items: int,
                    train_popularity) -> "SASRec":
        return cls(item_table, config.hidden_size, config.max_items, settings.num_layers, settings.num_heads,
                   settings.inner_size, config.dropout)

    def forward(self, item_ids: torch.Tensor) -> torch.Tensor:
        length = item_ids.shape[1]
        positions = torch.arange(length, device=item_ids.device)
        x = self.item_table(item_ids) * math.sqrt(self.hidden_size) + self.positions(positions)
        x = self.dropout(x) * (item_ids != 0).unsqueeze(-1)
        # Right padding + a causal mask: real positions never attend to the padding that follows them.
        causal = nn.Transformer.generate_square_subsequent_mask(length, device=item_ids.device)
        return self.final_norm(self.blocks(x, mask=causal, is_causal=True))
