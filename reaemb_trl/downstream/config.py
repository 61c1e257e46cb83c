"""DownstreamConfig: one recommender training run (the options every recommender shares: schedule, protocol, groups,
width) and, per recommender, its own settings (`recommender_kwargs`, checked against its settings class)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..errors import InputError
from ..validation import check_numbers
from .models import RecommenderConfig
from .protocol import check_protocols
from .registry import RECOMMENDERS, get_recommender

# Ranges of the numeric options (validation.check_numbers also checks that each is a finite int / float); the
# counts checked in __post_init__ (epochs, batch sizes, ...) keep their own "at least" messages.
NUMBER_RULES = {"seed": ">= 0", "negative_seed": ">= 0", "dropout": "[0, 1)", "learning_rate": ">= 0",
                "weight_decay": ">= 0", "tail_threshold": ">= 0", "short_user_threshold": ">= 0"}


def _own_settings_help() -> str:
    listed = "; ".join(f"{name}: " + (", ".join(f"{key}={value}" for key, value in entry.options().items()) or "none")
                       for name, entry in RECOMMENDERS.items())
    return ("Each recommender's own settings, by recommender name, e.g. {bert4rec: {mask_prob: 0.3}} (JSON on the "
            f"command line); a recommender takes only its own keys. Defaults: {listed}.")


@dataclass
class DownstreamConfig:
    recommender: str = field(default="sasrec", metadata={
        "help": f"Recommender: {', '.join(RECOMMENDERS)}, or one published under the reaemb_trl.recommenders entry "
                "points."})
    protocol: str = field(default="sampled", metadata={
        "help": "sampled (100 negatives) or full (whole catalogue); the protocol whose validation NDCG@10 picks the "
                "checkpoint."})
    seed: int = field(default=0, metadata={"help": "Seed of model initialisation, batches and training negatives."})
    negative_seed: int = field(default=0, metadata={
        "help": "Seed of the sampled-protocol candidates; kept apart from --seed so every compared run shares them."})
    num_negatives: int = field(default=100, metadata={"help": "Sampled negatives per user (sampled protocol)."})
    hidden_size: int = field(default=128, metadata={"help": "Hidden width of the recommender."})
    max_items: int = field(default=200, metadata={"help": "Most recent items a model reads per user."})
    dropout: float = field(default=0.2, metadata={"help": "Dropout on embeddings and inside blocks."})
    recommender_kwargs: dict[str, Any] | str | None = field(default=None, metadata={"help": _own_settings_help()})
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
        get_recommender(self.recommender)
        check_protocols([self.protocol])
        if self.max_items < 2:
            raise InputError(f"max_items must be at least 2, got {self.max_items}")
        for name in ("epochs", "patience", "num_negatives", "batch_size", "eval_batch_size", "hidden_size"):
            if getattr(self, name) < 1:  # 0 negatives would rank every target first: HR = NDCG = 1
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")
        self._check_recommender_kwargs()

    def _check_recommender_kwargs(self) -> None:
        """Every section names a known recommender and only keys of its settings class, with values in range: one
        config serves every recommender `compare` trains, each reading its own section."""
        if isinstance(self.recommender_kwargs, str):
            try:
                self.recommender_kwargs = json.loads(self.recommender_kwargs)
            except json.JSONDecodeError as err:
                raise InputError(f"downstream config: recommender_kwargs is not valid JSON ({err.msg})") from None
        if not isinstance(self.recommender_kwargs or {}, dict):
            raise InputError("downstream config: recommender_kwargs must be a mapping of recommender: {key: value}, "
                             f"got {self.recommender_kwargs!r}")
        self.recommender_kwargs = dict(self.recommender_kwargs or {})
        for name in self.recommender_kwargs:
            try:
                get_recommender(name)
            except InputError as err:
                raise InputError(f"downstream config: recommender_kwargs: {err}") from None
            self.recommender_config(name)

    def recommender_config(self, name: str | None = None) -> RecommenderConfig:
        """The settings of recommender `name` (default: this run's), its defaults updated by its section."""
        name = name or self.recommender
        entry = get_recommender(name)
        kwargs = self.recommender_kwargs.get(name) or {}
        if not isinstance(kwargs, dict):
            raise InputError(f"downstream config: recommender_kwargs[{name!r}] must be a mapping of key: value")
        known = [f.name for f in fields(entry.config_cls)]
        unknown = [key for key in kwargs if key not in known]
        if unknown:
            raise InputError(f"downstream config: recommender {name!r} has no option {', '.join(map(repr, unknown))} "
                             f"(its options: {', '.join(known) or 'none'})")
        try:
            return entry.config_cls(**kwargs)
        except InputError as err:
            raise InputError(f"{err} (recommender_kwargs of {name!r})") from None

    def to_dict(self) -> dict:
        """The shared options, every section given, and the settings this run's recommender trains with."""
        return {**asdict(self), "recommender_config": asdict(self.recommender_config())}
