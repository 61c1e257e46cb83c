"""The latent-reasoning thought module: one single-head attention layer over the pass-1 hidden states."""

from __future__ import annotations

import math

import torch
from torch import nn


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


class ThoughtModule(nn.Module):
    """Computes the thought vectors r_k that replace the thought-token inputs in pass 2.

    For thought k at position p_k the query is the pass-1 state at p_k - 1 and the keys/values are the pass-1 states
    at every non-pad position < p_k. q, k and v are bias-free d x d projections; RoPE (base `rope_base`) rotates q and
    k by their true, unpadded positions; scores are scaled by 1/sqrt(d); one head, no output projection.
    """

    def __init__(self, hidden_size: int, rope_base: float = 1000.0):
        super().__init__()
        if hidden_size % 2:
            raise ValueError(f"RoPE needs an even hidden size, got {hidden_size}")
        self.hidden_size = hidden_size
        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.k_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.v_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        inv_freq = 1.0 / rope_base ** (torch.arange(0, hidden_size, 2, dtype=torch.float32) / hidden_size)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    @torch.no_grad()
    def reset_parameters(self, value_scale: float = 1.0, generator: torch.Generator | None = None) -> None:
        """q/k: uniform(+-1/sqrt(d)) like nn.Linear; v = value_scale * identity.

        Without an output projection r is an attention-weighted average of v(H). With v a scaled identity, r at step 0
        is an average of the prefix's pass-1 states rescaled by `value_scale` (the ratio of the backbone's input
        embedding norm to its final-state norm), i.e. a vector at the scale of the input embeddings it replaces.
        """
        bound = 1.0 / math.sqrt(self.hidden_size)
        for proj in (self.q_proj, self.k_proj):
            values = torch.rand(proj.weight.shape, generator=generator, dtype=torch.float32) * 2 - 1
            proj.weight.copy_(values * bound)
        eye = torch.eye(self.hidden_size, dtype=torch.float32) * value_scale
        self.v_proj.weight.copy_(eye)

    def _rope(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        angles = positions.to(torch.float32)[..., None] * self.inv_freq
        angles = torch.cat((angles, angles), dim=-1)
        return x * angles.cos().to(x.dtype) + _rotate_half(x) * angles.sin().to(x.dtype)

    def forward(self, states: torch.Tensor, state_mask: torch.Tensor, state_positions: torch.Tensor,
                query_index: torch.Tensor) -> torch.Tensor:
        """states [B, N, d], state_mask [B, N] (bool), state_positions [B, N], query_index [B, j] -> r [B, j, d].

        Thought k attends to index n iff state_mask[n] and n <= query_index[k] (the query position included).
        """
        x = states.to(self.q_proj.weight.dtype)
        gather_index = query_index[..., None].expand(-1, -1, x.shape[-1])
        queries = x.gather(1, gather_index)
        query_positions = state_positions.gather(1, query_index)
        q = self._rope(self.q_proj(queries), query_positions)
        k = self._rope(self.k_proj(x), state_positions)
        v = self.v_proj(x)
        scores = q @ k.transpose(1, 2) / math.sqrt(self.hidden_size)
        key_index = torch.arange(x.shape[1], device=x.device)
        allowed = state_mask[:, None, :].bool() & (key_index[None, None, :] <= query_index[:, :, None])
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        return scores.softmax(dim=-1) @ v
