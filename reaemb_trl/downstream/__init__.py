"""Downstream evaluation: sequential recommenders on ID or embedding-file item tables, two protocols, groups.

Reads only prepared folders and embedding files (`reaemb_trl.data`); knows nothing of the embedder or trainers.
"""

from .compare import compare
from .config import RECOMMENDERS, DownstreamConfig
from .evaluate import evaluate
from .metrics import ranking_metrics
from .models import MODELS, build_model
from .protocol import LeaveOneOutSplit, sample_negatives
from .trainer import DownstreamTrainer, RunResult

__all__ = [
    "DownstreamConfig",
    "DownstreamTrainer",
    "LeaveOneOutSplit",
    "MODELS",
    "RECOMMENDERS",
    "RunResult",
    "build_model",
    "compare",
    "evaluate",
    "ranking_metrics",
    "sample_negatives",
]
