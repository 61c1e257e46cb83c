"""Downstream evaluation: sequential recommenders on ID or embedding-file item tables, two protocols, groups.

Reads only prepared folders and embedding files (`reaemb_trl.data`); knows nothing of the embedder or trainers.
"""

from .compare import compare
from .config import DownstreamConfig
from .evaluate import evaluate
from .metrics import ranking_metrics
from .models import RecommenderConfig, build_model
from .protocol import LeaveOneOutSplit, sample_negatives
from .registry import (
    ENTRY_POINT_GROUP,
    RECOMMENDERS,
    Recommender,
    available_recommenders,
    get_recommender,
    register_recommender,
)
from .trainer import DownstreamTrainer, RunResult

__all__ = [
    "ENTRY_POINT_GROUP",
    "RECOMMENDERS",
    "DownstreamConfig",
    "DownstreamTrainer",
    "LeaveOneOutSplit",
    "Recommender",
    "RecommenderConfig",
    "RunResult",
    "available_recommenders",
    "build_model",
    "compare",
    "evaluate",
    "get_recommender",
    "ranking_metrics",
    "register_recommender",
    "sample_negatives",
]
