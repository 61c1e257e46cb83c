"""Stage 2, CRRL: GRPO on the latent thoughts (TRL's GRPOTrainer), rewarded by item co-occurrence."""

from .cooc_sft import run_cooc_sft
from .crrl_config import CRRLConfig
from .crrl_trainer import EmbeddingGRPOTrainer, item_dataset, select_trainable
from .reward_model import CandidateScores, CooccurrenceRewardModel
from .run import build_trainer, load_policy, run

__all__ = [
    "CRRLConfig",
    "CandidateScores",
    "CooccurrenceRewardModel",
    "EmbeddingGRPOTrainer",
    "build_trainer",
    "item_dataset",
    "load_policy",
    "run",
    "run_cooc_sft",
    "select_trainable",
]
