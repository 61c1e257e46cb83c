"""How token states become the item embedding: one weight per state, for every pooling mode (POOLING_MODES).

The fast path pools the prefix and the suffix (thoughts and what follows) separately and adds the two weighted sums,
so each mode is written once, as weights, and both paths call the same function.
"""

from __future__ import annotations

import torch


def true_positions(mask: torch.Tensor) -> torch.Tensor:
    """[B, T] position of each column counted over real tokens only (left padding does not shift positions)."""
    return (mask.long().cumsum(1) - 1).clamp(min=0)


def pool_weights(mode: str, mask: torch.Tensor, positions: torch.Tensor, thought_start) -> torch.Tensor:
    """Weight [B, T] of each state under pooling `mode`. `thought_start` (int or [B]): the column of the first
    thought; the columns before it are the text prefix, which no thought can change in a causal model. The fast
    path calls this on the prefix alone (thought_start = its width) and on the suffix alone (thought_start = 0)."""
    mask = mask.bool()
    columns = torch.arange(mask.shape[1], device=mask.device)
    start = torch.as_tensor(thought_start, device=mask.device).reshape(-1, 1)
    from_thought = mask & (columns >= start)
    if mode == "mean":
        return mask.float()
    if mode == "weighted":
        return mask.float() * (positions.float() + 1)
    if mode == "thought":
        return from_thought.float()
    last = (mask.long() * columns).argmax(1, keepdim=True)  # the end token, always after the thoughts
    return (from_thought & (columns == last)).float()


def pool(mode: str, hidden: torch.Tensor, mask: torch.Tensor, thought_index: torch.Tensor) -> torch.Tensor:
    """[B, d] pooled embedding of whole prompts' states [B, T, d] (the reference path)."""
    weights = pool_weights(mode, mask, true_positions(mask), thought_index[:, 0]).to(hidden.dtype)
    return (hidden * weights[..., None]).sum(1) / weights.sum(1, keepdim=True)
