"""Rewards for CRRL: a registry of functions that score sampled item embeddings against their candidates."""

from . import builtin  # noqa: F401  (registers the built-in rewards)
from .registry import ENTRY_POINT_GROUP, RewardFn, available_rewards, bind_reward, get_reward, register_reward

__all__ = ["ENTRY_POINT_GROUP", "RewardFn", "available_rewards", "bind_reward", "get_reward", "register_reward"]
