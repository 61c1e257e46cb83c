"""How token states become the item embedding: the registry of pooling modes, one entry per mode.

A mode is a weight function: the embedding is the weighted mean of the final states, sum_t w_t h_t / sum_t w_t. The
fast path pools the text prefix and the suffix (thoughts and what follows) separately and adds the two weighted
sums and the two weight totals, so each mode is written once, as weights, and both paths call the same function.
That split is exact only for weight functions that honour the contract of `PoolingMode`.

Adding a mode: decorate its weight function with `@register_pooling("name", "one-line description")`; the config's
choices, the help texts and the parametrized tests (which need its hand-written oracle) follow from the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import InputError

WeightFunction = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class PoolingMode:
    """`weights(mask, positions, from_thought) -> [B, T]` float weights of the states of a [B, T] batch:

    - `mask` (bool): the real (non-pad) columns; `positions`: each column's position counted over real tokens;
      `from_thought` (bool): the real columns at or after the first thought.
    - Contract (what the fast path relies on): the weight of a column depends only on what these give about that
      column and on where the row's real columns end, so that for a row split at its first thought, the weights of
      the whole row equal the prefix's weights (`from_thought` all False) followed by the suffix's (positions
      continuing). Pad columns get 0, and every row gets a positive total weight.
    """

    name: str
    description: str
    weights: WeightFunction

    def __str__(self) -> str:  # what help texts print after the name
        return self.description


POOLING_MODES: dict[str, PoolingMode] = {}


def register_pooling(name: str, description: str) -> Callable[[WeightFunction], WeightFunction]:
    """Decorator: register a weight function as the pooling mode `name` (see `PoolingMode` for its contract)."""

    def register(weights: WeightFunction) -> WeightFunction:
        if name in POOLING_MODES:
            raise InputError(f"pooling mode {name!r} is already registered")
        POOLING_MODES[name] = PoolingMode(name, description, weights)
        return weights

    return register


def pooling_mode(name: str) -> PoolingMode:
    if name not in POOLING_MODES:
        raise InputError(f"pooling must be one of {tuple(POOLING_MODES)}, got {name!r}")
    return POOLING_MODES[name]


# In a causal model the states before the thought cannot see it, so with `mean` the thought moves only j + 1 of L
# pooled states; `thought` and `last` let it move all of them.
@register_pooling("mean", "mean over every real position (the reference)")
def _mean(mask: torch.Tensor, positions: torch.Tensor, from_thought: torch.Tensor) -> torch.Tensor:
    return mask.float()


@register_pooling("weighted", "position-weighted mean, weight = position + 1 (later states have read more of the "
                              "prompt)")
def _weighted(mask: torch.Tensor, positions: torch.Tensor, from_thought: torch.Tensor) -> torch.Tensor:
    return mask.float() * (positions.float() + 1)


@register_pooling("thought", "mean over the thought tokens and the tokens after them")
def _thought(mask: torch.Tensor, positions: torch.Tensor, from_thought: torch.Tensor) -> torch.Tensor:
    return from_thought.float()


@register_pooling("last", "the last (end) token")
def _last(mask: torch.Tensor, positions: torch.Tensor, from_thought: torch.Tensor) -> torch.Tensor:
    columns = torch.arange(mask.shape[1], device=mask.device)
    last = (mask.long() * columns).argmax(1, keepdim=True)  # the end token, always after the thoughts
    return (from_thought & (columns == last)).float()


def true_positions(mask: torch.Tensor) -> torch.Tensor:
    """[B, T] position of each column counted over real tokens only (left padding does not shift positions)."""
    return (mask.long().cumsum(1) - 1).clamp(min=0)


def pool_weights(mode: str, mask: torch.Tensor, positions: torch.Tensor, thought_start) -> torch.Tensor:
    """Weight [B, T] of each state under pooling `mode`. `thought_start` (int or [B]): the column of the first
    thought; the columns before it are the text prefix, which no thought can change in a causal model. The fast
    path calls this on the prefix alone (thought_start = its width) and on the suffix alone (thought_start = 0)."""
    weights = pooling_mode(mode).weights
    mask = mask.bool()
    columns = torch.arange(mask.shape[1], device=mask.device)
    start = torch.as_tensor(thought_start, device=mask.device).reshape(-1, 1)
    return weights(mask, positions, mask & (columns >= start))


def pool(mode: str, hidden: torch.Tensor, mask: torch.Tensor, thought_index: torch.Tensor) -> torch.Tensor:
    """[B, d] pooled embedding of whole prompts' states [B, T, d] (the reference path)."""
    weights = pool_weights(mode, mask, true_positions(mask), thought_index[:, 0]).to(hidden.dtype)
    return (hidden * weights[..., None]).sum(1) / weights.sum(1, keepdim=True)
