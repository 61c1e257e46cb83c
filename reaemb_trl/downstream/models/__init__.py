"""The recommenders evaluated downstream, one per file, and the factory that builds one from its config: adding a
recommender is one file here plus its entry in MODELS (the configs and the CLI take their choices from it)."""

from __future__ import annotations

import numpy as np
from torch import nn

from ..item_table import build_item_table
from .base import SequentialRecommender
from .bert4rec import BERT4Rec
from .gru4rec import GRU4Rec
from .popularity import Popularity
from .sasrec import SASRec

MODELS: dict[str, type[SequentialRecommender]] = {"sasrec": SASRec, "gru4rec": GRU4Rec, "bert4rec": BERT4Rec}


def build_model(config, num_items: int, train_popularity: np.ndarray,
                embeddings: np.ndarray | None = None) -> nn.Module:
    """`config.recommender` built from `config` (a DownstreamConfig) on an ID table or the `embeddings` table."""
    if config.recommender == "pop":
        return Popularity(train_popularity)
    model_class = MODELS[config.recommender]
    table = build_item_table(num_items, config.hidden_size, embeddings, config.trainable_table,
                             model_class.special_tokens)
    return model_class.from_config(config, table, num_items)


__all__ = ["BERT4Rec", "GRU4Rec", "MODELS", "Popularity", "SASRec", "SequentialRecommender", "build_model"]
