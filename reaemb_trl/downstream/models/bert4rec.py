"""BERT4Rec: bidirectional self-attention trained to recover masked items (Sun et al., 2019)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..losses import masked_item_ce
from ..sequences import end_aligned_windows, pad_right
from .base import RecommenderConfig, SequentialRecommender


@dataclass
class BERT4RecConfig(RecommenderConfig):
    number_rules = {"num_layers": ">= 1", "num_heads": ">= 1", "inner_size": ">= 1", "mask_prob": "[0, 1]"}

    num_layers: int = field(default=2, metadata={"help": "Transformer blocks."})
    num_heads: int = field(default=2, metadata={"help": "Attention heads."})
    inner_size: int = field(default=256, metadata={"help": "Feed-forward width of a transformer block."})
    mask_prob: float = field(default=0.2, metadata={"help": "Share of items masked per training sequence."})


class BERT4Rec(SequentialRecommender):
    """The item table must hold one special token after the catalogue: [MASK] = num_items + 1."""

    config_class = BERT4RecConfig
    special_tokens = 1

    def __init__(self, item_table: nn.Module, num_items: int, hidden_size: int = 128, max_items: int = 200,
                 num_layers: int = 2, num_heads: int = 2, inner_size: int = 256, dropout: float = 0.2,
                 mask_prob: float = 0.2):
        super().__init__()
        self.item_table = item_table
        self.mask_id = num_items + 1
        self.mask_prob = mask_prob
        self.context_length = max_items - 1
        self.positions = nn.Embedding(max_items, hidden_size)
        self.input_norm = nn.LayerNorm(hidden_size)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(hidden_size, num_heads, inner_size, dropout, activation="gelu",
                                           batch_first=True)
        self.blocks = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)

    @classmethod
    def from_config(cls, config, settings: BERT4RecConfig, item_table: nn.Module, num_items: int,
                    train_popularity) -> "BERT4Rec":
        return cls(item_table, num_items, config.hidden_size, config.max_items, settings.num_layers,
                   settings.num_heads, settings.inner_size, config.dropout, settings.mask_prob)

    def training_rows(self, train_sequences: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Whole windows (inputs = targets): the cloze loss masks positions itself."""
        width = self.context_length + 1
        windows = [w for seq in train_sequences if len(seq) >= 2 for w in end_aligned_windows(seq, width, width)]
        inputs, _ = pad_right(windows, width)
        return inputs, inputs.copy()

    def calculate_loss(self, inputs: torch.Tensor, targets: torch.Tensor, generator: torch.Generator,
                       num_items: int, config) -> torch.Tensor:
        return masked_item_ce(self, inputs, self.mask_prob, generator)

    def forward(self, item_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(item_ids.shape[1], device=item_ids.device)
        x = self.dropout(self.input_norm(self.item_table(item_ids) + self.positions(positions)))
        return self.blocks(x, src_key_padding_mask=item_ids == 0)

    def user_vectors(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Append [MASK] after each user's last item and read the state there."""
        extended = torch.cat([inputs, torch.zeros_like(inputs[:, :1])], dim=1)
        extended[torch.arange(len(lengths), device=inputs.device), lengths] = self.mask_id
        return super().user_vectors(extended, lengths + 1)
