"""Co-occurrence against a direct count, the training-prefix guarantee, and CRRL candidates."""

import numpy as np
import pytest
import scipy.sparse as sp

from reaemb_trl.data import PreparedDataset, build_cooccurrence, sample_candidates
from reaemb_trl.data.cooccurrence import FlatSequences, training_prefixes
from reaemb_trl.errors import InputError


def random_sequences(num_users=60, num_items=40, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.choice(np.arange(1, num_items + 1), size=rng.integers(1, 15), replace=False)
            for _ in range(num_users)]


def direct_count(sequences, num_items, window=None):
    counts = np.zeros((num_items + 1, num_items + 1), dtype=np.int64)
    for seq in sequences:
        prefix = list(seq[:-2])
        for p, a in enumerate(prefix):
            for q, b in enumerate(prefix):
                if p != q and (window is None or abs(p - q) <= window):
                    counts[a, b] += 1
    return counts


@pytest.mark.parametrize("window", [None, 1, 3])
def test_cooccurrence_matches_direct_count(window):
    sequences = random_sequences()
    matrix = build_cooccurrence(sequences, 40, window=window)
    assert isinstance(matrix, sp.csr_matrix) and matrix.shape == (41, 41) and matrix.dtype == np.int32
    expected = direct_count(sequences, 40, window)
    assert expected.sum() > 0
    np.testing.assert_array_equal(matrix.toarray(), expected)
    assert (matrix != matrix.T).nnz == 0 and not matrix.diagonal().any()


@pytest.mark.parametrize("window", [None, 2])
def test_flat_sequences_give_what_a_list_of_arrays_gives(window):
    sequences = random_sequences(seed=3) + [np.array([], dtype=np.int64), np.array([7])]  # empty and too short
    flat = FlatSequences.from_arrays(sequences)
    assert len(flat) == len(sequences) and list(flat[-1]) == [7] and list(flat[0]) == list(sequences[0])
    with pytest.raises(IndexError):
        flat[len(sequences)]
    for got, expected in zip(training_prefixes(flat), training_prefixes(sequences)):
        np.testing.assert_array_equal(got, expected)
    assert (build_cooccurrence(flat, 40, window) != build_cooccurrence(sequences, 40, window)).nnz == 0


def test_window_wider_than_any_sequence_equals_no_window():
    sequences = random_sequences(seed=1)
    assert (build_cooccurrence(sequences, 40, window=20) != build_cooccurrence(sequences, 40)).nnz == 0
    assert build_cooccurrence(sequences, 40, window=1).sum() < build_cooccurrence(sequences, 40).sum()


def test_validation_and_test_items_are_never_counted():
    # Items 8 and 9 appear only as validation / test targets: their rows and columns must stay empty.
    sequences = [np.array([1, 2, 3, 8, 9]), np.array([2, 3, 4, 9, 8]), np.array([1, 4, 5, 6, 7])]
    matrix = build_cooccurrence(sequences, 9).toarray()
    assert not matrix[8].any() and not matrix[9].any() and not matrix[:, 8].any() and not matrix[:, 9].any()
    assert matrix[1, 2] == 1 and matrix[2, 3] == 2 and matrix[4, 5] == 1 and matrix[5, 6] == 0  # 6 is validation


def test_prepared_sample_counts_training_prefixes_only(prepared_sample):
    ds = PreparedDataset.load(prepared_sample)
    prefixes = [seq[:-2] for seq in ds.sequences]
    assert (ds.cooccurrence != build_cooccurrence(prefixes, ds.num_items, holdout=0)).nnz == 0
    leaky = build_cooccurrence(ds.sequences, ds.num_items, holdout=0)  # what the reference counts
    assert leaky.sum() > ds.cooccurrence.sum()
    np.testing.assert_array_equal(ds.item_popularity, np.bincount(np.concatenate(prefixes), minlength=2421))
    assert ds.item_popularity[0] == 0


# ------------------------------------------------------------------------------------------------- candidates
@pytest.fixture(scope="module")
def cooc():
    return build_cooccurrence(random_sequences(num_users=80, num_items=60, seed=2), 60)


def test_positives_are_the_top_counts_and_negatives_never_cooccur(cooc):
    cand = sample_candidates(cooc, num_positives=2, num_candidates=8, seed=0)
    dense = cooc.toarray()
    assert cand.item_ids.shape == (61, 8) and cand.item_ids.dtype == np.int64 and cand.weights.dtype == np.float32
    assert not cand.item_ids[0].any() and not cand.weights[0].any() and cand.num_positives[0] == 0
    for item in range(1, 61):
        partners = np.flatnonzero(dense[item])
        top_counts = sorted(dense[item, partners], reverse=True)[:2]
        m = cand.num_positives[item]
        assert m == len(top_counts)
        positives = cand.item_ids[item, :m]
        assert dense[item, positives].tolist() == top_counts  # the top counts, best first (ties in any order)
        assert cand.weights[item, :m].tolist() == top_counts
        negatives = cand.item_ids[item, m:]
        assert len(set(negatives.tolist())) == len(negatives)
        assert (negatives >= 1).all() and (negatives != item).all()
        assert not dense[item, negatives].any() and not cand.weights[item, m:].any()


def test_candidates_are_seeded_and_redrawn_each_epoch(cooc):
    first = sample_candidates(cooc, seed=3, epoch=0)
    np.testing.assert_array_equal(first.item_ids, sample_candidates(cooc, seed=3, epoch=0).item_ids)
    other_epoch = sample_candidates(cooc, seed=3, epoch=1)
    np.testing.assert_array_equal(first.weights[:, 0], other_epoch.weights[:, 0])  # the same top scores
    assert (first.item_ids[:, 1:] != other_epoch.item_ids[:, 1:]).mean() > 0.5
    assert (first.item_ids != sample_candidates(cooc, seed=4, epoch=0).item_ids).any()


def test_item_without_cooccurrence_gets_only_negatives():
    sequences = [np.array([1, 2, 3, 4, 5]), np.array([2, 1, 6, 7, 8])]  # item 9: no interaction at all
    cand = sample_candidates(build_cooccurrence(sequences, 9), num_positives=1, num_candidates=4, seed=0)
    for item in (4, 5, 7, 8, 9):  # 4, 5, 7, 8 sit only in validation / test positions
        assert cand.num_positives[item] == 0 and not cand.weights[item].any()
        assert len(set(cand.item_ids[item].tolist())) == 4 and item not in cand.item_ids[item]
    assert cand.item_ids[1, 0] == 2 and cand.num_positives[1] == 1


def test_head_item_negatives_come_from_its_small_complement():
    # Item 1 co-occurs with items 2..9 of 12 (the exact-draw path): only 10, 11, 12 never co-occur with it.
    cooc = build_cooccurrence([np.array([1, k, 10, 11]) for k in range(2, 10)], 12)
    for epoch in range(3):
        cand = sample_candidates(cooc, num_positives=1, num_candidates=4, seed=0, epoch=epoch)
        assert sorted(cand.item_ids[1, 1:].tolist()) == [10, 11, 12]
    with pytest.raises(InputError, match="item 1 co-occurs with 8 of the 12 items: too few never-co-occurring"):
        sample_candidates(cooc, num_positives=1, num_candidates=5)


def test_a_huge_window_costs_what_the_data_costs_and_equals_whole_prefixes():
    sequences = [np.array([1, 2, 3, 1, 4, 5]), np.array([2, 3, 4, 5]), np.array([5, 1, 2])]
    whole = build_cooccurrence(sequences, 5)
    huge = build_cooccurrence(sequences, 5, window=100_000_000)  # one pass, not one per offset
    assert (huge != whole).nnz == 0
    assert (build_cooccurrence(sequences, 5, window=1) != whole).nnz > 0


def test_zero_window_is_refused_before_any_file_is_read(tmp_path):
    from reaemb_trl.data import prepare_dataset
    from reaemb_trl.errors import InputError

    with pytest.raises(InputError, match="--cooc-window must be at least 1"):
        prepare_dataset("csv", interactions=tmp_path / "missing.csv", output=tmp_path / "out", cooc_window=0)
    assert not (tmp_path / "out").exists()
