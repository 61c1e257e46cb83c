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

A reward's own parameters (`cooc_softmax`'s `temperature`) are keyword parameters with defaults; a recipe sets them
per reward with `reward_kwargs: {cooc_softmax: {temperature: 0.05}}`, and `bind_reward` is where they are applied.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import inspect
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


def bind_reward(name: str, kwargs: dict | None = None) -> RewardFn:
    """`get_reward(name)` with its own parameters set from `kwargs`; each must be a named parameter of the reward
    (not swallowed by its **kwargs), so a typo is refused instead of ignored."""
    fn = get_reward(name)
    if not kwargs:
        return fn
    parameters = inspect.signature(fn).parameters
    named = [key for key, p in parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)][2:]
    unknown = sorted(set(kwargs) - set(named))
    if unknown:
        raise InputError(f"reward_kwargs: reward {name!r} has no parameter {', '.join(map(repr, unknown))} "
                         f"(its parameters: {', '.join(named) or 'none'})")
    return functools.update_wrapper(functools.partial(fn, **kwargs), fn)
