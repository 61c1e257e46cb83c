"""Item tables for the recommenders: learned ID embeddings, or an embedding file behind a linear adapter."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class IDItemTable(nn.Module):
    """A learned embedding per item id; id 0 is padding, ids above `num_items` are special tokens (e.g. [MASK])."""

    def __init__(self, num_items: int, hidden_size: int, num_special_tokens: int = 0):
        super().__init__()
        self.num_items = num_items
        self.embedding = nn.Embedding(num_items + 1 + num_special_tokens, hidden_size, padding_idx=0)
        nn.init.normal_(self.embedding.weight, std=0.02)
        with torch.no_grad():
            self.embedding.weight[0].zero_()

    def forward(self, item_ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(item_ids)

    def all_items(self) -> torch.Tensor:
        """[num_items + 1, hidden]: the output vectors every item is scored with (row 0 = padding)."""
        return self.embedding.weight[: self.num_items + 1]


class PretrainedItemTable(nn.Module):
    """Rows of an embedding file mapped to the recommender's width by a 2-layer linear adapter (d -> d/2 -> hidden).

    The table is frozen by default (a buffer); `trainable=True` fine-tunes it as a parameter.
    Special tokens get their own learned vectors in the hidden space.
    """

    def __init__(self, table: np.ndarray, hidden_size: int, trainable: bool = False, num_special_tokens: int = 0):
        super().__init__()
        weights = torch.as_tensor(np.asarray(table, dtype=np.float32)).clone()
        self.num_items = weights.shape[0] - 1
        dim = weights.shape[1]
        if trainable:
            self.table = nn.Parameter(weights)
        else:
            self.register_buffer("table", weights)
        self.adapter = nn.Sequential(nn.Linear(dim, max(dim // 2, 1)), nn.Linear(max(dim // 2, 1), hidden_size))
        self.special = nn.Embedding(num_special_tokens, hidden_size) if num_special_tokens else None
        if self.special is not None:
            nn.init.normal_(self.special.weight, std=0.02)

    def forward(self, item_ids: torch.Tensor) -> torch.Tensor:
        is_item = item_ids <= self.num_items
        vectors = self.adapter(self.table[item_ids.clamp(max=self.num_items)])
        if self.special is not None:
            special = self.special((item_ids - self.num_items - 1).clamp(min=0))
            vectors = torch.where(is_item.unsqueeze(-1), vectors, special)
        return vectors * (item_ids != 0).unsqueeze(-1)

    def all_items(self) -> torch.Tensor:
        vectors = self.adapter(self.table)
        return torch.cat([torch.zeros_like(vectors[:1]), vectors[1:]])


def build_item_table(num_items: int, hidden_size: int, embeddings: np.ndarray | None = None, trainable: bool = False,
                     num_special_tokens: int = 0) -> nn.Module:
    if embeddings is None:
        return IDItemTable(num_items, hidden_size, num_special_tokens)
    if embeddings.shape[0] != num_items + 1:
        raise ValueError(f"embedding table has {embeddings.shape[0]} rows, expected num_items + 1 = {num_items + 1}")
    return PretrainedItemTable(embeddings, hidden_size, trainable, num_special_tokens)
