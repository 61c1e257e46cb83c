"""The recommenders evaluated downstream, one per file (its settings class and its model), registered below, and the
factory that builds one from its config: adding a recommender is one file plus one `register_recommender` line (the
configs, the CLI and the tests take their choices from the registry)."""

from __future__ import annotations

import numpy as np
from torch import nn

from ...errors import InputError
from ..item_table import build_item_table
from ..registry import get_recommender, register_recommender
from .base import RecommenderConfig, SequentialRecommender
from .bert4rec import BERT4Rec, BERT4RecConfig
from .gru4rec import GRU4Rec, GRU4RecConfig
from .popularity import Popularity, PopularityConfig
from .sasrec import SASRec, SASRecConfig

register_recommender("sasrec", SASRecConfig, SASRec)
register_recommender("gru4rec", GRU4RecConfig, GRU4Rec)
register_recommender("bert4rec", BERT4RecConfig, BERT4Rec)
register_recommender("pop", PopularityConfig, Popularity)


def build_model(config, num_items: int, train_popularity: np.ndarray,
                embeddings: np.ndarray | None = None) -> nn.Module:
    """`config.recommender` (a DownstreamConfig) with its own settings, on an ID table or the `embeddings` table, or
    on none for a recommender that uses no table."""
    entry = get_recommender(config.recommender)
    table = None
    if not entry.uses_table:
        if embeddings is not None:
            raise InputError(f"the {entry.name} recommender uses no item table (drop --embeddings)")
    else:
        table = build_item_table(num_items, config.hidden_size, embeddings, config.trainable_table,
                                 getattr(entry.model_cls, "special_tokens", 0))
    return entry.model_cls.from_config(config, config.recommender_config(), table, num_items, train_popularity)


__all__ = ["BERT4Rec", "BERT4RecConfig", "GRU4Rec", "GRU4RecConfig", "Popularity", "PopularityConfig",
           "RecommenderConfig", "SASRec", "SASRecConfig", "SequentialRecommender", "build_model"]
