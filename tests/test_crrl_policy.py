import pytest
import torch
from torch.distributions import Normal, kl_divergence

from reaemb_trl.crrl.policy import (
    clip_fractions,
    gaussian_kl,
    gaussian_logprob,
    group_advantages,
    noise_free_baseline_advantages,
    reduce_per_token,
    surrogate_loss,
)

SIGMA = 0.1


def sample(seed=0, n=6, j=2, d=8):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, j, d, generator=gen), torch.randn(n, j, d, generator=gen), torch.randn(n, j, d, generator=gen)


def test_gaussian_logprob_matches_torch_distributions():
    thoughts, mean, _ = sample()
    direct = Normal(mean, SIGMA).log_prob(thoughts).flatten(1)
    torch.testing.assert_close(gaussian_logprob(thoughts, mean, SIGMA), direct)


@pytest.mark.parametrize("reduction", ["mean", "sum", "per_dimension"])
def test_gaussian_log_ratio_reductions(reduction):
    thoughts, new_mean, old_mean = sample(1)
    log_ratio = reduce_per_token(
        gaussian_logprob(thoughts, new_mean, SIGMA) - gaussian_logprob(thoughts, old_mean, SIGMA), reduction
    )
    # log pi_new(z) - log pi_old(z) = (||z - mu_old||^2 - ||z - mu_new||^2) / (2 sigma^2), per dimension.
    per_dim = (((thoughts - old_mean) ** 2 - (thoughts - new_mean) ** 2) / (2 * SIGMA**2)).flatten(1)
    expected = {"mean": per_dim.mean(1, keepdim=True), "sum": per_dim.sum(1, keepdim=True), "per_dimension": per_dim}
    torch.testing.assert_close(log_ratio, expected[reduction], rtol=1e-5, atol=1e-3)
    assert log_ratio.shape == ((6, 16) if reduction == "per_dimension" else (6, 1))


def test_gaussian_kl_matches_torch_distributions():
    _, mean, ref_mean = sample(2)
    direct = kl_divergence(Normal(mean, SIGMA), Normal(ref_mean, SIGMA)).flatten(1)
    torch.testing.assert_close(gaussian_kl(mean, ref_mean, SIGMA), direct)
    assert gaussian_kl(mean, mean, SIGMA).abs().max().item() == 0.0


def test_group_advantages_follow_trl_definition():
    rewards = torch.tensor([1.0, 2.0, 3.0, 4.0, 0.0, 0.0, 1.0, 5.0])
    grouped = rewards.view(2, 4)
    centred = (grouped - grouped.mean(1, keepdim=True)).flatten()
    torch.testing.assert_close(group_advantages(rewards, 4, "none"), centred)
    group_std = grouped.std(1).repeat_interleave(4)
    torch.testing.assert_close(group_advantages(rewards, 4, "group"), centred / (group_std + 1e-4))
    torch.testing.assert_close(group_advantages(rewards, 4, "batch"), centred / (rewards.std() + 1e-4))
    with pytest.raises(ValueError):
        group_advantages(rewards, 4, "bogus")


def test_unscorable_samples_get_zero_advantage():
    rewards = torch.tensor([1.0, 3.0, float("nan"), float("nan")])
    advantages = group_advantages(rewards, 2, "none")
    assert advantages.tolist() == [-1.0, 1.0, 0.0, 0.0]


def test_noise_free_baseline_is_the_reference_formula():
    rewards = torch.tensor([0.5, 0.7, 0.2, 0.3, 0.1, 0.4])  # groups of 3, noise-free samples 0.5 and 0.3
    centred = rewards - 0.4
    torch.testing.assert_close(noise_free_baseline_advantages(rewards, 3), centred / centred.norm())


def test_clipped_surrogate_engages_outside_the_trust_region():
    log_ratio = torch.log(torch.tensor([[1.5], [0.5], [1.1]]))
    advantages = torch.tensor([1.0, -1.0, 1.0])
    loss, ratio = surrogate_loss(log_ratio, advantages, "grpo", epsilon_low=0.2, epsilon_high=0.28)
    torch.testing.assert_close(loss.squeeze(1), torch.tensor([-1.28, 0.8, -1.1]))
    low, high = clip_fractions(ratio, advantages, 0.2, 0.28)
    assert low.item() == pytest.approx(1 / 3) and high.item() == pytest.approx(1 / 3)
    # The clipped samples carry no gradient; the unclipped one carries A * ratio.
    log_ratio = log_ratio.clone().requires_grad_(True)
    surrogate_loss(log_ratio, advantages, "grpo", 0.2, 0.28)[0].sum().backward()
    torch.testing.assert_close(log_ratio.grad.squeeze(1), torch.tensor([0.0, 0.0, -1.1]))
