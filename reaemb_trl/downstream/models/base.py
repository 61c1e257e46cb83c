"""What every recommender offers the trainer: its training rows and loss, user vectors from right-padded
sequences, and item scores. The default objective is next-item prediction (SASRec, GRU4Rec). Beside it, the base of
each recommender's own settings class."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np
import torch
from torch import nn

from ...validation import check_numbers
from ..losses import next_item_bce
from ..sequences import end_aligned_windows, pad_right


@dataclass
class RecommenderConfig:
    """A recommender's own settings (every field with a default); `number_rules` bounds its numeric fields, checked
    like every other config's (validation.check_numbers)."""

    number_rules: ClassVar[dict[str, str]] = {}

    def __post_init__(self):
        check_numbers(self, "downstream config", self.number_rules)


class SequentialRecommender(nn.Module):
    """Subclasses map item ids [B, L] (right-padded with 0) to hidden states [B, L, H] and own an `item_table`.

    A subclass is built by `from_config(config, settings, item_table, num_items, train_popularity)` (registry.py);
    `special_tokens` is how many rows its item table needs after the catalogue (BERT4Rec's [MASK])."""

    item_table: nn.Module
    #: How many past items a model reads (BERT4Rec keeps one position for its [MASK] token).
    context_length: int
    special_tokens: int = 0
    uses_table: bool = True
    deterministic: bool = False

    @classmethod
    def from_config(cls, config, settings, item_table: nn.Module, num_items: int,
                    train_popularity: np.ndarray) -> "SequentialRecommender":
        raise NotImplementedError

    def training_rows(self, train_sequences: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Padded inputs and next-item targets. A prefix longer than the model's window is cut into windows aligned
        to its end, so every next-item target is trained once per epoch (the most recent window keeps the full
        context)."""
        context = self.context_length
        rows = [w for seq in train_sequences if len(seq) >= 2 for w in end_aligned_windows(seq, context + 1, context)]
        inputs, _ = pad_right([r[:-1] for r in rows], context)
        targets, _ = pad_right([r[1:] for r in rows], context)
        return inputs, targets

    def calculate_loss(self, inputs: torch.Tensor, targets: torch.Tensor, generator: torch.Generator,
                       num_items: int, config) -> torch.Tensor:
        """Next-item BCE against one uniformly sampled negative per position (never the target itself)."""
        negatives = torch.randint(1, num_items + 1, targets.shape, generator=generator)
        negatives = torch.where(negatives == targets, negatives % num_items + 1, negatives)
        return next_item_bce(self, inputs, targets, negatives)

    def user_vectors(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[B, H]: the hidden state at each user's last real position."""
        hidden = self(inputs)
        return hidden[torch.arange(len(lengths), device=hidden.device), lengths - 1]

    def score_all(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[B, num_items + 1] scores against the whole catalogue (column 0 = padding, left to the caller)."""
        return self.user_vectors(inputs, lengths) @ self.item_table.all_items().T

    def score_candidates(self, inputs: torch.Tensor, lengths: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """[B, C] scores of the listed candidate items per user."""
        users = self.user_vectors(inputs, lengths)
        return torch.einsum("bh,bch->bc", users, self.item_table(candidates))
