"""Built-in co-occurrence rewards (signature in `registry`). Ranks are 0-based: the number of candidates scoring
higher."""

from __future__ import annotations

import torch

from .registry import register_reward


def candidate_ranks(scores: torch.Tensor) -> torch.Tensor:
    """[N, K] rank of each candidate within its row, 0 = best; ties share the better rank."""
    return (scores.unsqueeze(1) > scores.unsqueeze(2)).sum(-1)


def _rank_gain(ranks: torch.Tensor) -> torch.Tensor:
    # The reference's discount: 1 / (1 + log2(rank + 2)), so rank 0 earns 0.5.
    return 1.0 / (1.0 + torch.log2(ranks.to(torch.float32) + 2.0))


@register_reward("cooc_ndcg")
def cooc_ndcg(scores: torch.Tensor, positive_weights: torch.Tensor, **kwargs) -> torch.Tensor:
    """1 / (1 + log2(rank + 2)) of the best positive (the largest weight); 0 for a row without positives."""
    top_positive = positive_weights.argmax(dim=1, keepdim=True)
    gain = _rank_gain(candidate_ranks(scores)).gather(1, top_positive).squeeze(1)
    return gain * (positive_weights.sum(dim=1) > 0)


@register_reward("cooc_weighted_ndcg")
def cooc_weighted_ndcg(scores: torch.Tensor, positive_weights: torch.Tensor, **kwargs) -> torch.Tensor:
    """Sum over the positives of (count share) x 1 / (1 + log2(rank + 2))."""
    return (positive_weights * _rank_gain(candidate_ranks(scores))).sum(dim=1)


@register_reward("cooc_mrr")
def cooc_mrr(scores: torch.Tensor, positive_weights: torch.Tensor, **kwargs) -> torch.Tensor:
    """Sum over the positives of (count share) x 1 / (rank + 1): the reciprocal rank with one positive."""
    return (positive_weights / (candidate_ranks(scores).to(torch.float32) + 1.0)).sum(dim=1)


@register_reward("cooc_softmax")
def cooc_softmax(
    scores: torch.Tensor, positive_weights: torch.Tensor, temperature: float = 0.1, **kwargs
) -> torch.Tensor:
    """Sum over the positives of (count share) x log softmax(scores / temperature): a smooth, rank-free reward."""
    return (positive_weights * torch.log_softmax(scores / temperature, dim=1)).sum(dim=1)
