"""What every recommender offers the trainer: user vectors from right-padded sequences, and item scores."""

from __future__ import annotations

import torch
from torch import nn


class SequentialRecommender(nn.Module):
    """Subclasses map item ids [B, L] (right-padded with 0) to hidden states [B, L, H] and own an `item_table`."""

    item_table: nn.Module
    #: How many past items a model reads (BERT4Rec keeps one position for its [MASK] token).
    context_length: int

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
