"""The latent-thought policy: log-probabilities by name, the closed-form KL, and the clipped GRPO surrogate.

The policy is a Gaussian over the thought vectors, z ~ N(mu_theta, sigma^2 I). A sample is stored as its thoughts z and
its standard-normal noise eps = (z - mu_old) / sigma, so both log-probabilities below can be recomputed with gradient:

- `gaussian`: the exact density of z under the current mean, one value per latent dimension.
- `token_likelihood` (the reference's surrogate): the backbone's log-probs of the tokens after the thought, given the
  reparameterised thought mu_theta + sigma * eps; one value per suffix token. Those tokens are fixed, not sampled,
  so this is not the policy's score function: its update, sum_i A_i grad_z log p(suffix | z_i), is to first order
  sigma * H * (the policy gradient), H the Hessian of log p(suffix | z). It lowers the reward of the planted task in
  tests/test_crrl_learns.py, where `gaussian` solves it.

Both return [N, T] "per-token" values; `reduce_per_token` turns their difference into the importance log-ratio.
"""

from __future__ import annotations

import math

import torch
from trl.trainer.utils import nanstd

LOGPROB_REDUCTIONS = ("mean", "sum", "per_dimension")
CLIPPED_LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
LOSS_TYPES = CLIPPED_LOSS_TYPES + ("cispo", "sapo")


def gaussian_logprob(thoughts: torch.Tensor, mean: torch.Tensor, sigma: float) -> torch.Tensor:
    """log N(z; mu, sigma^2) per latent dimension: thoughts and mean [N, j, d] -> [N, j * d]."""
    squared = (thoughts - mean).flatten(1).pow(2)
    return -squared / (2.0 * sigma**2) - math.log(sigma) - 0.5 * math.log(2.0 * math.pi)


def gaussian_kl(mean: torch.Tensor, ref_mean: torch.Tensor, sigma: float) -> torch.Tensor:
    """KL(N(mu, sigma^2 I) || N(mu_ref, sigma^2 I)) per latent dimension: [N, j, d] -> [N, j * d]."""
    return (mean - ref_mean).flatten(1).pow(2) / (2.0 * sigma**2)


def reduce_per_token(values: torch.Tensor, reduction: str) -> torch.Tensor:
    """[N, T] -> [N, 1] (`mean`, `sum`: one ratio per sample, GSPO-like) or [N, T] (`per_dimension`)."""
    if reduction == "mean":
        return values.mean(dim=1, keepdim=True)
    if reduction == "sum":
        return values.sum(dim=1, keepdim=True)
    if reduction == "per_dimension":
        return values
    raise ValueError(f"unknown log-prob reduction {reduction!r}; expected one of {LOGPROB_REDUCTIONS}")


def policy_logprobs(
    name: str,
    embedder,
    prefix,
    mean: torch.Tensor,
    thoughts: torch.Tensor,
    noise: torch.Tensor,
    sigma: float,
    group_size: int,
) -> torch.Tensor:
    """Per-token log-probs [B*G, T] of the stored samples under the policy whose thought mean is `mean` [B, j, d].
    `prefix` (a full `PrefixState`, with its cache) is read by `token_likelihood` only; `gaussian` takes None."""
    expanded_mean = mean.repeat_interleave(group_size, dim=0)
    if name == "gaussian":
        return gaussian_logprob(thoughts, expanded_mean, sigma)
    if name == "token_likelihood":
        return embedder.suffix_token_logprobs(prefix, expanded_mean + sigma * noise, group_size=group_size)
    raise ValueError(f"unknown policy log-prob {name!r}; expected 'gaussian' or 'token_likelihood'")


def surrogate_loss(
    log_ratio: torch.Tensor,
    advantages: torch.Tensor,
    loss_type: str,
    epsilon_low: float,
    epsilon_high: float,
    logprobs: torch.Tensor | None = None,
    delta: float | None = None,
    sapo_temperatures: tuple[float, float] = (1.0, 1.05),
) -> tuple[torch.Tensor, torch.Tensor]:
    """TRL's per-token GRPO objectives on a latent policy: returns (per-token loss [N, T], importance ratio [N, T]).

    `log_ratio` is [N, 1] or [N, T]; `advantages` [N]. `cispo` needs the per-token `logprobs` (same shape).
    """
    advantages = advantages.unsqueeze(1)
    ratio = torch.exp(log_ratio)
    if loss_type in CLIPPED_LOSS_TYPES:
        clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)
        unclipped = torch.clamp(ratio, max=delta) if delta is not None else ratio
        return -torch.min(unclipped * advantages, clipped * advantages), ratio
    if loss_type == "cispo":
        weight = torch.clamp(ratio, max=epsilon_high).detach()
        return -weight * advantages * logprobs, ratio
    if loss_type == "sapo":
        positive_temperature, negative_temperature = sapo_temperatures
        temperature = torch.where(advantages > 0, positive_temperature, negative_temperature)
        return -torch.sigmoid(temperature * (ratio - 1)) * 4 / temperature * advantages, ratio
    raise ValueError(f"loss_type {loss_type!r} does not apply to a latent-thought policy; use one of {LOSS_TYPES}")


def clip_fractions(ratio: torch.Tensor, advantages: torch.Tensor, epsilon_low: float, epsilon_high: float):
    """Fractions of ratios clipped low (A < 0) and high (A > 0), as TRL reports them."""
    advantages = advantages.unsqueeze(1)
    low = (ratio < 1 - epsilon_low) & (advantages < 0)
    high = (ratio > 1 + epsilon_high) & (advantages > 0)
    return low.float().mean(), high.float().mean()


def group_advantages(rewards: torch.Tensor, group_size: int, scale_rewards: str) -> torch.Tensor:
    """GRPO's advantage as TRL defines it: reward minus its group mean, divided by the group ("group") or batch
    ("batch") standard deviation, or not divided ("none"). NaN rewards (unscorable samples) get advantage 0."""
    grouped = rewards.view(-1, group_size)
    centred = (grouped - grouped.nanmean(dim=1, keepdim=True)).flatten()
    if scale_rewards == "group":
        std = nanstd(grouped, dim=1).repeat_interleave(group_size)
    elif scale_rewards == "batch":
        std = nanstd(rewards).expand_as(rewards)
    elif scale_rewards == "none":
        std = None
    else:
        raise ValueError(f"scale_rewards must be 'group', 'batch' or 'none', got {scale_rewards!r}")
    advantages = centred if std is None else centred / (std + 1e-4)
    return torch.nan_to_num(advantages, nan=0.0)


def noise_free_baseline_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """The reference's advantage: reward minus the batch mean of the noise-free (first) samples' rewards, divided by
    the L2 norm of the result over the batch."""
    baseline = rewards.view(-1, group_size)[:, 0].nanmean()
    centred = torch.nan_to_num(rewards - baseline, nan=0.0)
    return centred / centred.norm().clamp(min=1e-8)

