"""Rewards for CRRL: a registry of functions that score sampled item embeddings against their candidates."""

from .registry import ENTRY_POINT_GROUP, RewardFn, available_rewards, get_reward, register_reward
from . import builtin  # noqa: F401  (registers the built-in rewards)

__all__ = ["ENTRY_POINT_GROUP", "RewardFn", "available_rewards", "get_reward", "register_reward"]
