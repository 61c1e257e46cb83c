"""DownstreamConfig: one recommender training run (model size, schedule, protocol, groups)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..errors import InputError
from ..validation import check_numbers
from .models import MODELS
from .protocol import PROTOCOLS

# The recommenders a run can train: every model class registered in `models.MODELS`, and the popularity baseline.
RECOMMENDERS = (*MODELS, "pop")
# Ranges of the numeric options (validation.check_numbers also checks that each is a finite int / float); the
# counts checked in __post_init__ (epochs, batch sizes, ...) keep their own "at least" messages.
NUMBER_RULES = {"seed": ">= 0", "negative_seed": ">= 0", "num_layers": ">= 1", "num_heads": ">= 1",
                "inner_size": ">= 1", "dropout": "[0, 1)", "mask_prob": "[0, 1]", "learning_rate": ">= 0",
                "weight_decay": ">= 0", "tail_threshold": ">= 0", "short_user_threshold": ">= 0"}


@dataclass
class DownstreamConfig:
    recommender: str = field(default="sasrec", metadata={"help": f"Recommender: {', '.join(RECOMMENDERS)}."})
    protocol: str = field(default="sampled", metadata={
        "help": "sampled (100 negatives) or full (whole catalogue); the protocol whose validation NDCG@10 picks the "
                "checkpoint."})
    seed: int = field(default=0, metadata={"help": "Seed of model initialisation, batches and training negatives."})
    negative_seed: int = field(default=0, metadata={
        "help": "Seed of the sampled-protocol candidates; kept apart from --seed so every compared run shares them."})
    num_negatives: int = field(default=100, metadata={"help": "Sampled negatives per user (sampled protocol)."})
    hidden_size: int = field(default=128, metadata={"help": "Hidden width of the recommender."})
    max_items: int = field(default=200, metadata={"help": "Most recent items a model reads per user."})
    num_layers: int = field(default=2, metadata={"help": "Transformer blocks (SASRec, BERT4Rec)."})
    num_heads: int = field(default=2, metadata={"help": "Attention heads (SASRec, BERT4Rec)."})
    inner_size: int = field(default=256, metadata={"help": "Feed-forward width of a transformer block."})
    dropout: float = field(default=0.2, metadata={"help": "Dropout on embeddings and inside blocks."})
    mask_prob: float = field(default=0.2, metadata={"help": "BERT4Rec: share of items masked per sequence."})
    trainable_table: bool = field(default=False, metadata={"help": "Fine-tune the embedding-file table too."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Adam learning rate."})
    weight_decay: float = field(default=0.0, metadata={"help": "Adam weight decay."})
    batch_size: int = field(default=128, metadata={"help": "Users per training batch."})
    eval_batch_size: int = field(default=1024, metadata={"help": "Users per evaluation batch."})
    epochs: int = field(default=200, metadata={"help": "Most training epochs."})
    patience: int = field(default=20, metadata={"help": "Epochs without a better validation NDCG@10 before stopping."})
    tail_threshold: int = field(default=20, metadata={"help": "Tail item: fewer training interactions than this."})
    short_user_threshold: int = field(default=10, metadata={"help": "Short user: fewer interactions than this."})
    show_progress: bool = field(default=True, metadata={"help": "Show a progress bar over epochs."})

    def __post_init__(self):
        check_numbers(self, "downstream config", NUMBER_RULES)
        if self.recommender not in RECOMMENDERS:
            raise InputError(f"recommender {self.recommender!r} is unknown (choose from {', '.join(RECOMMENDERS)})")
        if self.protocol not in PROTOCOLS:
            raise InputError(f"protocol {self.protocol!r} is unknown (choose from {', '.join(PROTOCOLS)})")
        if self.max_items < 2:
            raise InputError(f"max_items must be at least 2, got {self.max_items}")
        for name in ("epochs", "patience", "num_negatives", "batch_size", "eval_batch_size", "hidden_size"):
            if getattr(self, name) < 1:  # 0 negatives would rank every target first: HR = NDCG = 1
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)
