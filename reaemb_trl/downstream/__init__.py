"""Downstream evaluation: sequential recommenders on ID or embedding-file item tables, two protocols, groups.

Reads only prepared folders and embedding files (`reaemb_trl.data`); knows nothing of the embedder or trainers.
"""

from .compare import compare
from .evaluate import evaluate
from .metrics import ranking_metrics
from .models import BACKBONES, build_model
from .protocol import LeaveOneOutSplit, sample_negatives
from .trainer import DownstreamConfig, DownstreamTrainer, RunResult

__all__ = [
    "BACKBONES",
    "DownstreamConfig",
    "DownstreamTrainer",
    "LeaveOneOutSplit",
    "RunResult",
    "build_model",
    "compare",
    "evaluate",
    "ranking_metrics",
    "sample_negatives",
]
