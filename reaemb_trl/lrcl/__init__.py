"""Stage 1, LRCL: contrastive training of the embedder on attribute-dropout views of each item."""

from .contrastive import ContrastiveEmbedder
from .evaluation import view_retrieval_accuracy
from .losses import LOSSES, InfoNCELoss, SoftCLIPLoss, build_loss
from .lrcl_config import LRCLConfig
from .lrcl_trainer import LRCLTrainer
from .run import run
from .views import ViewSampler, make_views

__all__ = ["LOSSES", "ContrastiveEmbedder", "InfoNCELoss", "LRCLConfig", "LRCLTrainer", "SoftCLIPLoss",
           "ViewSampler", "build_loss", "make_views", "run", "view_retrieval_accuracy"]
