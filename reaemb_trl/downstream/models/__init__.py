"""The recommenders evaluated downstream and the factory the trainer builds them with."""

from __future__ import annotations

import numpy as np
from torch import nn

from ..item_table import build_item_table
from .base import SequentialRecommender
from .bert4rec import BERT4Rec
from .gru4rec import GRU4Rec
from .popularity import Popularity
from .sasrec import SASRec

BACKBONES = ("sasrec", "gru4rec", "bert4rec", "pop")


def build_model(backbone: str, num_items: int, train_popularity: np.ndarray, embeddings: np.ndarray | None = None,
                trainable_table: bool = False, hidden_size: int = 128, max_len: int = 200, num_layers: int = 2,
                num_heads: int = 2, inner_size: int = 256, dropout: float = 0.2) -> nn.Module:
    if backbone == "pop":
        return Popularity(train_popularity)
    special_tokens = 1 if backbone == "bert4rec" else 0
    table = build_item_table(num_items, hidden_size, embeddings, trainable_table, special_tokens)
    if backbone == "sasrec":
        return SASRec(table, hidden_size, max_len, num_layers, num_heads, inner_size, dropout)
    if backbone == "gru4rec":
        return GRU4Rec(table, hidden_size, max_len, 1, dropout)
    if backbone == "bert4rec":
        return BERT4Rec(table, num_items, hidden_size, max_len, num_layers, num_heads, inner_size, dropout)
    raise ValueError(f"unknown backbone {backbone!r} (choose from {', '.join(BACKBONES)})")


__all__ = ["BACKBONES", "BERT4Rec", "GRU4Rec", "Popularity", "SASRec", "SequentialRecommender", "build_model"]
