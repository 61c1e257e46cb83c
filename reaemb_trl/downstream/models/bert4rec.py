"""BERT4Rec: bidirectional self-attention trained to recover masked items (Sun et al., 2019)."""

from __future__ import annotations

import torch
from torch import nn

from .base import SequentialRecommender


class BERT4Rec(SequentialRecommender):
    """The item table must hold one special token after the catalogue: [MASK] = num_items + 1."""

    def __init__(self, item_table: nn.Module, num_items: int, hidden_size: int = 128, max_len: int = 200,
                 num_layers: int = 2, num_heads: int = 2, inner_size: int = 256, dropout: float = 0.2):
        super().__init__()
        self.item_table = item_table
        self.mask_id = num_items + 1
        self.context_length = max_len - 1
        self.positions = nn.Embedding(max_len, hidden_size)
        self.input_norm = nn.LayerNorm(hidden_size)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(hidden_size, num_heads, inner_size, dropout, activation="gelu",
                                           batch_first=True)
        self.blocks = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)

    def forward(self, item_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(item_ids.shape[1], device=item_ids.device)
        x = self.dropout(self.input_norm(self.item_table(item_ids) + self.positions(positions)))
        return self.blocks(x, src_key_padding_mask=item_ids == 0)

    def user_vectors(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Append [MASK] after each user's last item and read the state there."""
        extended = torch.cat([inputs, torch.zeros_like(inputs[:, :1])], dim=1)
        extended[torch.arange(len(lengths), device=inputs.device), lengths] = self.mask_id
        return super().user_vectors(extended, lengths + 1)
