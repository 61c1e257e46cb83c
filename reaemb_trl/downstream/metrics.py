"""HR@K and NDCG@K from rank counts, exact in expectation over random tie-breaking, and group summaries."""

from __future__ import annotations

import numpy as np
import torch

KS = (5, 10, 20)
GROUPS = ("overall", "tail_items", "popular_items", "short_users", "long_users")


def rank_counts(scores: torch.Tensor, target_scores: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per row: how many candidates score above the target, and how many tie with it (the target excluded).

    `scores` [B, C] must contain the target once; masked candidates hold -inf and never count.
    """
    target = target_scores.unsqueeze(1)
    greater = (scores > target).sum(dim=1)
    ties = (scores == target).sum(dim=1) - 1
    return greater.cpu().numpy(), ties.cpu().numpy()


def ranking_metrics(greater: np.ndarray, ties: np.ndarray, ks: tuple[int, ...] = KS) -> dict[str, np.ndarray]:
    """Per-user HR@K and NDCG@K, averaged over every rank the target can take when ties are broken at random.

    Counting ties against (or for) the target would reward or punish constant scorers such as popularity;
    the target's rank is uniform on [greater, greater + ties], so both metrics have a closed form.
    """
    greater = np.asarray(greater, dtype=np.int64)
    ties = np.asarray(ties, dtype=np.int64)
    if np.any(ties < 0) or np.any(greater < 0):
        raise ValueError("rank counts must be non-negative (is the target among the scored candidates?)")
    positions = ties + 1
    metrics = {}
    for k in ks:
        discounts = 1.0 / np.log2(np.arange(k) + 2.0)
        cumulative = np.concatenate([[0.0], np.cumsum(discounts)])
        low = np.minimum(greater, k)
        high = np.minimum(greater + positions, k)
        metrics[f"HR@{k}"] = (high - low) / positions
        metrics[f"NDCG@{k}"] = (cumulative[high] - cumulative[low]) / positions
    return metrics


def group_masks(targets: np.ndarray, sequence_lengths: np.ndarray, train_popularity: np.ndarray,
                tail_threshold: int = 20, short_user_threshold: int = 10) -> dict[str, np.ndarray]:
    """Boolean user masks: tail items = target seen fewer than `tail_threshold` times in training."""
    tail = train_popularity[targets] < tail_threshold
    short = sequence_lengths < short_user_threshold
    ones = np.ones(len(targets), dtype=bool)
    return {"overall": ones, "tail_items": tail, "popular_items": ~tail, "short_users": short, "long_users": ~short}


def summarize(per_user: dict[str, np.ndarray], masks: dict[str, np.ndarray]) -> dict[str, dict[str, float | None]]:
    """Mean of every metric inside every group; an empty group gives None (JSON null), never NaN."""
    return {
        group: {name: (float(values[mask].mean()) if mask.any() else None) for name, values in per_user.items()}
        for group, mask in masks.items()
    }
