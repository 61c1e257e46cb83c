"""Issue 23 §1: pooling modes are one registry; unknown names are refused; the help texts and the parametrized path
and oracle tests follow the registry, and they fail for a mode that breaks the contract or has no oracle."""

import pytest
import test_embedder_paths as paths  # tests/ is on sys.path (rootdir conftest); imported as a module, not collected
import torch

from reaemb_trl.embedder import POOLING_MODES, LatentReasoningConfig, PoolingMode, register_pooling
from reaemb_trl.embedder.pooling import pool_weights, true_positions
from reaemb_trl.errors import InputError


def _first_of_each_part(mask, positions, from_thought):
    """Breaks the contract: the weight goes to the first real column of whatever part it is given, so the fast path
    (prefix and suffix pooled apart) weighs two states where the reference path weighs one."""
    columns = torch.arange(mask.shape[1], device=mask.device)
    first = mask.long().argmax(1, keepdim=True)
    return (mask & (columns == first)).float()


def _square_weighted(mask, positions, from_thought):
    """Honours the contract: a column's weight follows from its own position."""
    return mask.float() * (positions.float() + 1) ** 2


def _square_weighted_oracle(states, thought_pos):
    weights = torch.arange(1, states.shape[0] + 1, dtype=states.dtype) ** 2
    return (weights[:, None] * states).sum(0) / weights.sum()


def test_unknown_mode_is_refused_not_pooled_as_last():
    mask = torch.ones(2, 5, dtype=torch.long)
    listed = r"pooling must be one of \('mean', 'weighted', 'thought', 'last'\), got 'max'"
    with pytest.raises(InputError, match=listed):
        LatentReasoningConfig(pooling="max")
    with pytest.raises(InputError, match="got 'max'"):
        pool_weights("max", mask, true_positions(mask), 2)  # this used to return the last token's weights
    with pytest.raises(InputError, match="'mean' is already registered"):
        register_pooling("mean", "another mean")(_square_weighted)


def test_help_texts_list_the_registry():
    from dataclasses import fields

    from reaemb_trl.lrcl import LRCLConfig

    config_help = next(f for f in fields(LatentReasoningConfig) if f.name == "pooling").metadata["help"]
    assert config_help == "One of POOLING_MODES: mean, weighted, thought, last."
    lrcl_help = next(f for f in fields(LRCLConfig) if f.name == "pooling").metadata["help"]
    for name, mode in POOLING_MODES.items():
        assert f"{name} = {mode.description}" in lrcl_help


def test_each_builtin_mode_weighs_as_documented():
    # one left-padded row: pad, 3 text tokens, the thought at column 4, one token after it
    mask = torch.tensor([[0, 1, 1, 1, 1, 1]])
    positions = true_positions(mask)
    expected = {"mean": [0, 1, 1, 1, 1, 1], "weighted": [0, 1, 2, 3, 4, 5], "thought": [0, 0, 0, 0, 1, 1],
                "last": [0, 0, 0, 0, 0, 1]}
    assert set(expected) == set(POOLING_MODES)
    for name, weights in expected.items():
        assert pool_weights(name, mask, positions, 4).tolist() == [[float(w) for w in weights]], name


def test_a_mode_that_breaks_the_contract_fails_the_path_test(monkeypatch):
    monkeypatch.setitem(POOLING_MODES, "first", PoolingMode("first", "first token", _first_of_each_part))
    with pytest.raises(AssertionError):
        paths.test_every_pooling_mode_fast_equals_reference("first", "left", 1)
    with pytest.raises(AssertionError, match="'first' has no hand-written oracle"):
        paths.test_matches_hand_written_two_pass("first")


def test_a_mode_from_outside_the_package_runs_on_both_paths(monkeypatch):
    monkeypatch.setitem(POOLING_MODES, "square", PoolingMode("square", "squared position weights", _square_weighted))
    monkeypatch.setitem(paths.HAND_POOLED, "square", _square_weighted_oracle)
    paths.test_every_pooling_mode_fast_equals_reference("square", "right", 2)
    paths.test_matches_hand_written_two_pass("square")
    # and its oracle is a real check: the same mode against the mean's oracle fails
    monkeypatch.setitem(paths.HAND_POOLED, "square", paths.HAND_POOLED["mean"])
    with pytest.raises(AssertionError):
        paths.test_matches_hand_written_two_pass("square")
