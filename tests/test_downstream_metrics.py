"""Ranking metrics against direct computation; leave-one-out splits and sampled negatives."""

import itertools
import math

import numpy as np
import pytest
import torch

from reaemb_trl.downstream.metrics import group_masks, rank_counts, ranking_metrics, summarize
from reaemb_trl.downstream.protocol import LeaveOneOutSplit, sample_negatives
from reaemb_trl.errors import InputError


def direct_metrics(scores, target_index, k):
    """Average HR@k / NDCG@k over every ordering of the tied candidates (brute force)."""
    scores = list(scores)
    hits, gains, orders = 0.0, 0.0, 0
    for perm in itertools.permutations(range(len(scores))):
        ranked = sorted(perm, key=lambda i: -scores[i])  # stable: ties keep the permutation's order
        rank = ranked.index(target_index)
        hits += rank < k
        gains += (1 / math.log2(rank + 2)) if rank < k else 0.0
        orders += 1
    return hits / orders, gains / orders


def test_metrics_match_direct_computation_on_hand_made_lists():
    # Each row: candidate scores, target at column 0; -inf marks masked candidates.
    rows = [
        [0.9, 0.1, 0.2, 0.3, 0.0, -1.0],         # target first: rank 0
        [0.5, 0.9, 0.8, 0.1, 0.2, 0.7],          # rank 3
        [0.5, 0.5, 0.5, 0.9, 0.1, 0.0],          # rank 1..3 with two ties
        [0.1, 0.9, 0.8, 0.7, 0.6, 0.5],          # rank 5: last
        [0.2, float("-inf"), 0.9, float("-inf"), 0.1, 0.0],  # masked items never count: rank 1
    ]
    scores = torch.tensor(rows)
    greater, ties = rank_counts(scores, scores[:, 0])
    assert greater.tolist() == [0, 3, 1, 5, 1]
    assert ties.tolist() == [0, 0, 2, 0, 0]
    for k in (1, 2, 3, 5):
        metrics = ranking_metrics(greater, ties, ks=(k,))
        for i, row in enumerate(rows):
            finite = [s for s in row if s != float("-inf")]
            hr, ndcg = direct_metrics(finite, 0, k)
            assert metrics[f"HR@{k}"][i] == pytest.approx(hr)
            assert metrics[f"NDCG@{k}"][i] == pytest.approx(ndcg)


def test_metric_values_on_simple_ranks():
    metrics = ranking_metrics(np.array([0, 4, 9, 10, 25]), np.zeros(5, dtype=int))
    assert metrics["HR@10"].tolist() == [1, 1, 1, 0, 0]
    assert metrics["HR@5"].tolist() == [1, 1, 0, 0, 0]
    assert metrics["NDCG@10"] == pytest.approx([1.0, 1 / math.log2(6), 1 / math.log2(11), 0, 0])
    assert metrics["HR@20"].tolist() == [1, 1, 1, 1, 0]


def test_group_summaries():
    per_user = {"NDCG@10": np.array([1.0, 0.5, 0.0, 0.25])}
    popularity = np.array([0, 30, 5, 19, 20])
    masks = group_masks(np.array([1, 2, 3, 4]), np.array([5, 12, 9, 10]), popularity, 20, 10)
    assert masks["tail_items"].tolist() == [False, True, True, False]
    assert masks["short_users"].tolist() == [True, False, True, False]
    summary = summarize(per_user, masks)
    assert summary["overall"]["NDCG@10"] == pytest.approx(0.4375)
    assert summary["tail_items"]["NDCG@10"] == pytest.approx(0.25)
    assert summary["popular_items"]["NDCG@10"] == pytest.approx(0.625)
    assert summary["short_users"]["NDCG@10"] == pytest.approx(0.5)
    assert summary["long_users"]["NDCG@10"] == pytest.approx(0.375)
    empty = summarize(per_user, {"tail_items": np.zeros(4, dtype=bool)})
    assert empty["tail_items"]["NDCG@10"] is None


def random_sequences(num_users=60, num_items=300, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.choice(np.arange(1, num_items + 1), size=rng.integers(3, 25), replace=False) for _ in range(num_users)]


def test_leave_one_out_split():
    seqs = [np.array([5, 6, 7, 8]), np.array([1, 2]), np.array([3, 4, 9])]
    split = LeaveOneOutSplit(seqs, num_items=9)
    assert [s.tolist() for s in split.train] == [[5, 6], [], [3]]
    assert split.eval_users.tolist() == [0, 2]  # user 1 has no valid/test pair
    valid, test = split.eval_set("valid"), split.eval_set("test")
    assert valid.targets.tolist() == [7, 4] and [s.tolist() for s in valid.inputs] == [[5, 6], [3]]
    assert test.targets.tolist() == [8, 9] and [s.tolist() for s in test.inputs] == [[5, 6, 7], [3, 4]]
    # Full ranking masks: valid = training prefix, test = training prefix + the validation item.
    assert [h.tolist() for h in valid.history] == [[5, 6], [3]]
    assert [h.tolist() for h in test.history] == [[5, 6, 7], [3, 4]]
    assert split.train_popularity.tolist() == [0, 0, 0, 1, 0, 1, 1, 0, 0, 0]
    with pytest.raises(InputError, match="1..9"):
        LeaveOneOutSplit([np.array([1, 2, 10])], num_items=9)


def test_sampled_negatives_exclude_history_and_repeat_with_seed():
    seqs = random_sequences()
    users = np.arange(len(seqs))
    first = sample_negatives(seqs, users, 300, num_negatives=100, seed=3)
    assert first.shape == (60, 100)
    for user, row in zip(users, first):
        assert len(set(row.tolist())) == 100
        assert not set(row.tolist()) & set(seqs[user].tolist())  # no target, no history
        assert row.min() >= 1 and row.max() <= 300
    assert np.array_equal(first, sample_negatives(seqs, users, 300, num_negatives=100, seed=3))
    assert not np.array_equal(first, sample_negatives(seqs, users, 300, num_negatives=100, seed=4))
    # A small catalogue takes the exact path (sampling from the complement) and still excludes the history.
    small = sample_negatives([np.arange(1, 31)], np.array([0]), 150, num_negatives=100, seed=0)
    assert small.min() > 30 and len(set(small[0].tolist())) == 100
    with pytest.raises(InputError, match="user on line 1 of the interactions: only 20 items"):
        sample_negatives([np.arange(1, 31)], np.array([0]), 50, num_negatives=100)
