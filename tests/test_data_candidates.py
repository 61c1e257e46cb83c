"""CRRL positives by rule (count, cosine, PMI) on hand-built matrices: ties, hubs, rows without a positive, and the
reward-signal statistics that `prepare` stores."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from reaemb_trl.data import PreparedDataset, sample_candidates
from reaemb_trl.data.association import association_scores
from reaemb_trl.data.reward_signal import positive_statistics, rank_reward_bounds


def symmetric(pairs: dict[tuple[int, int], int], size: int) -> sp.csr_matrix:
    rows, cols, values = zip(*[(a, b, c) for (a, b), c in pairs.items()] + [(b, a, c) for (a, b), c in pairs.items()])
    return sp.csr_matrix((values, (rows, cols)), shape=(size, size))


# Item 1 is a hub: it co-occurs with everything. Item 2's counts: hub 1 -> 3, item 3 -> 2 (3 is otherwise rare).
# Item 6 co-occurs once with 7 and once with 8 (a tie of single co-occurrences). Item 9 co-occurs with nothing.
HUB = {(1, 2): 3, (1, 3): 1, (1, 4): 4, (1, 5): 4, (1, 6): 2, (1, 7): 2, (1, 8): 2, (2, 3): 2, (4, 5): 5,
       (6, 7): 1, (6, 8): 1}
SIZE = 12  # items 1..11; 10 and 11 never co-occur, so every row has negatives


def positive_of(matrix, item, rule, min_count=None, seed=0, epoch=0):
    cand = sample_candidates(matrix, num_positives=1, num_candidates=3, seed=seed, epoch=epoch, rule=rule,
                             min_count=min_count)
    return int(cand.item_ids[item, 0]) if cand.num_positives[item] else None


def test_count_rule_picks_the_hub_and_popularity_discounting_rules_do_not():
    matrix = symmetric(HUB, SIZE)
    assert positive_of(matrix, 2, "count") == 1
    assert positive_of(matrix, 2, "cosine") == 3  # 2 / sqrt(m_3 = 3) > 3 / sqrt(m_1 = 19)
    assert positive_of(matrix, 2, "pmi") == 3


def test_scores_follow_their_definitions():
    matrix = symmetric(HUB, SIZE)
    dense = matrix.toarray().astype(float)
    mass = dense.sum(axis=1)
    cosine = association_scores(matrix, "cosine").toarray()
    assert cosine[2, 3] == pytest.approx(2 / math.sqrt(mass[2] * mass[3]))
    pmi = association_scores(matrix, "pmi", min_count=1).toarray()
    assert pmi[2, 3] == pytest.approx(math.log(2 * mass.sum() / (mass[2] * mass[3])))
    assert (pmi >= 0).all() and not pmi[dense == 0].any()
    np.testing.assert_array_equal(association_scores(matrix, "count").toarray(), dense)


def test_min_count_removes_single_cooccurrences_and_a_row_can_lose_its_positive():
    matrix = symmetric(HUB, SIZE)
    assert positive_of(matrix, 7, "pmi", min_count=1) in (1, 6)
    assert positive_of(matrix, 7, "pmi") == 1  # the default min count of PMI is 2: (6, 7) once is no positive
    assert positive_of(matrix, 6, "count", min_count=3) is None  # 6's counts are 2, 1, 1
    assert positive_of(matrix, 9, "count") is None


def test_ties_are_broken_at_random_per_seed_and_epoch_never_by_item_id():
    matrix = symmetric(HUB, SIZE)
    # Item 6: counts 2 (hub), 1, 1 -> with min count 1 under cosine, 7 and 8 tie exactly (same mass, same count).
    scores = association_scores(matrix, "cosine").toarray()
    assert scores[6, 7] == scores[6, 8] > scores[6, 1]
    picks = {positive_of(matrix, 6, "cosine", seed=seed, epoch=epoch) for seed in range(4) for epoch in range(4)}
    assert picks == {7, 8}


def test_several_positives_are_weighted_by_their_scores():
    matrix = symmetric(HUB, SIZE)
    cand = sample_candidates(matrix, num_positives=3, num_candidates=6, rule="cosine", seed=0)
    scores = association_scores(matrix, "cosine").toarray()
    for item in range(1, 10):
        m = cand.num_positives[item]
        chosen = cand.item_ids[item, :m]
        np.testing.assert_allclose(cand.weights[item, :m], scores[item, chosen], rtol=1e-6)
        assert (np.diff(cand.weights[item, :m]) <= 0).all()  # best first
        assert m == min(3, np.count_nonzero(scores[item]))
        if m:  # no left-out item scores above a chosen one
            assert np.sort(scores[item])[::-1][m] <= cand.weights[item, m - 1] + 1e-6


@st.composite
def cooccurrence_matrices(draw):
    size = draw(st.integers(8, 20))
    pairs = draw(st.dictionaries(st.tuples(st.integers(1, size - 6), st.integers(1, size - 6)).filter(
        lambda p: p[0] < p[1]), st.integers(1, 5), max_size=30))
    return symmetric(pairs, size) if pairs else sp.csr_matrix((size, size), dtype=np.int64)


@settings(max_examples=60, deadline=None)
@given(matrix=cooccurrence_matrices(), rule=st.sampled_from(["count", "cosine", "pmi"]),
       num_positives=st.integers(1, 3), seed=st.integers(0, 5), min_count=st.sampled_from([None, 1, 2]))
def test_a_positive_always_cooccurs_and_a_negative_never_does(matrix, rule, num_positives, seed, min_count):
    cand = sample_candidates(matrix, num_positives=num_positives, num_candidates=5, seed=seed, rule=rule,
                             min_count=min_count)
    dense = matrix.toarray()
    floor = min_count or (2 if rule == "pmi" else 1)
    for item in range(1, matrix.shape[0]):
        m = cand.num_positives[item]
        positives, negatives = cand.item_ids[item, :m], cand.item_ids[item, m:]
        assert (dense[item, positives] >= floor).all() and (cand.weights[item, :m] > 0).all()
        assert not dense[item, negatives].any() and item not in negatives and (negatives >= 1).all()
        assert len(set(cand.item_ids[item].tolist())) == 5


def test_statistics_of_a_hand_built_matrix():
    stats = positive_statistics(symmetric(HUB, SIZE), "count")
    assert stats["items_cooccurring"] == 8 and stats["items_with_positive"] == 8
    # Tied tops: item 1 (4 and 5 both 4) and item 6 (hub 1 at 2 is alone: not tied); item 7: (1: 2, 6: 1) no;
    # item 3: (1: 1, 2: 2) no; item 4 and 5: 5 alone; item 8: 2 alone; item 2: 3 alone.
    assert stats["tied_top_share"] == pytest.approx(1 / 8)
    assert stats["largest_hub"] == 4  # item 1 is the positive of 6, 7, 8 and 2
    assert stats["single_count_share"] == 0.0
    pmi = positive_statistics(symmetric(HUB, SIZE), "pmi")
    assert pmi["min_count"] == 2 and pmi["largest_hub"] < stats["largest_hub"]


def test_random_floor_of_the_rank_reward():
    floor, ceiling = rank_reward_bounds(10)
    assert floor == pytest.approx(0.3008, abs=1e-4) and ceiling == 0.5


def test_prepare_stores_the_reward_signal(prepared_sample):
    signal = PreparedDataset.load(prepared_sample).metadata["reward_signal"]
    count, cosine = signal["rules"]["count"], signal["rules"]["cosine"]
    # The bundled sample's known shape: a tied top for most items, and hubs that popularity discounting removes.
    assert 0.5 < count["tied_top_share"] < 0.6 and count["items_with_positive"] == 2407
    assert cosine["largest_hub"] < count["largest_hub"] / 5
    assert cosine["hub_positive_share"] < count["hub_positive_share"]
    assert signal["cooc_ndcg_random_floor"] == pytest.approx(0.3008, abs=1e-4)


@settings(max_examples=40, deadline=None)
@given(matrix=cooccurrence_matrices(), rule=st.sampled_from(["count", "cosine", "pmi"]))
def test_statistics_hold_for_any_matrix_even_without_positives(matrix, rule):
    stats = positive_statistics(matrix, rule)
    assert 0 <= stats["items_with_positive"] <= stats["items_cooccurring"] == np.count_nonzero(matrix.getnnz(axis=1))
    assert stats["distinct_positives"] <= stats["items_with_positive"]
    assert stats["largest_hub"] <= stats["items_with_positive"]
    for key in ("tied_top_share", "single_count_share", "hub_positive_share"):
        assert 0.0 <= stats[key] <= 1.0
