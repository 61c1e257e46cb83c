"""Reward functions by name: the built-in registry, `module:function` paths and the `reaemb_trl.rewards` entry points.

Every reward has one signature::

    def my_reward(scores: torch.Tensor, positive_weights: torch.Tensor, **kwargs) -> torch.Tensor:
        '''
        scores            [N, K] similarity of each sampled item embedding to each of its K candidates
                          (cosine or dot, as the reward model is configured; higher = closer).
        positive_weights  [N, K] each positive candidate's share of the anchor item's positive-rule scores
                          (the shares of one row sum to 1), 0 for the negatives.
        kwargs            item_ids [N], candidate_ids [N, K], embeddings [N, d]; accept and ignore the rest.
        returns           [N] one reward per sample, higher is better.
        '''
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import Callable

import torch

from ..errors import InputError

RewardFn = Callable[..., torch.Tensor]
ENTRY_POINT_GROUP = "reaemb_trl.rewards"

_REGISTRY: dict[str, RewardFn] = {}


def register_reward(name: str) -> Callable[[RewardFn], RewardFn]:
    """Decorator: make `fn` available as `get_reward(name)`. A name is taken once."""

    def decorate(fn: RewardFn) -> RewardFn:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise InputError(f"reward {name!r} is already registered (by {_REGISTRY[name].__module__})")
        _REGISTRY[name] = fn
        return fn

    return decorate


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def available_rewards() -> list[str]:
    """Registered names plus the names installed packages declare under the `reaemb_trl.rewards` entry points."""
    return sorted(set(_REGISTRY) | set(_entry_points()))


def _load_dotted(path: str) -> RewardFn:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise InputError(f"reward {path!r}: cannot import module {module_name!r} ({err})") from err
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise InputError(f"reward {path!r}: module {module_name!r} has no callable {attr!r}")
    return fn


def get_reward(name: str) -> RewardFn:
    """A reward by registered name, by `package.module:function`, or by `reaemb_trl.rewards` entry point."""
    if ":" in name:
        return _load_dotted(name)
    if name in _REGISTRY:
        return _REGISTRY[name]
    entry_points = _entry_points()
    if name in entry_points:
        fn = entry_points[name].load()
        if not callable(fn):
            raise InputError(f"reward {name!r}: entry point {entry_points[name].value!r} is not callable")
        return fn
    raise InputError(
        f"unknown reward {name!r}; registered: {', '.join(available_rewards())} "
        "(or give a dotted path such as my_pkg.rewards:my_reward)"
    )
