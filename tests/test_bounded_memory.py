"""Bounded memory at catalogue scale (issue 21): the co-occurrence, its reward signal and the candidates built in row
blocks sized by a memory budget are exactly what one block gives; the budget's parsing and sizing; prepare's
spilled matrix reads back as `scipy.sparse.load_npz` reads any; sparsity with repeats kept; `--interactions
bundled` on the command line."""

import json
import tempfile

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from reaemb_trl.data import PreparedDataset, build_cooccurrence, prepare_dataset, sample_candidates
from reaemb_trl.data import cooccurrence as cooc_module
from reaemb_trl.data.candidates import SCORE_BYTES_PER_ENTRY, top_positives
from reaemb_trl.data.cli import main as prepare_main
from reaemb_trl.data.cooccurrence import (
    SpilledRows,
    block_entries,
    cooccurrence_blocks,
    parse_memory,
    row_blocks,
    stored_row_blocks,
)
from reaemb_trl.data.prepare import PrepareOptions, sample_dataset_files
from reaemb_trl.data.reward_signal import reward_signal
from reaemb_trl.errors import InputError

TINY, HUGE = 1, 1 << 50  # bytes: one block per `num_cols` entries (the floor), and one block for everything


@pytest.fixture(autouse=True)
def budget_is_all_for_blocks(monkeypatch):
    """Blocks sized by the budget alone, not by what this process happens to hold already."""
    monkeypatch.setattr(cooc_module, "_resident_bytes", lambda: 0)


def about_eight_blocks(matrix: sp.csr_matrix, bytes_per_entry: int) -> int:
    return matrix.nnz // 8 * bytes_per_entry


def assert_same_csr(blocked: sp.csr_matrix, whole: sp.csr_matrix) -> None:
    assert blocked.shape == whole.shape and blocked.dtype == whole.dtype == np.int32
    for name in ("indptr", "indices", "data"):
        np.testing.assert_array_equal(getattr(blocked, name), getattr(whole, name))


def assert_same_candidates(first, second) -> None:
    for name in ("item_ids", "weights", "num_positives"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))


@pytest.fixture(scope="module")
def sample_sequences(prepared_sample):
    ds = PreparedDataset.load(prepared_sample)
    return ds.sequences, ds.num_items, ds.cooccurrence


@pytest.mark.parametrize("window", [None, 1, 3])
def test_blocked_cooccurrence_of_the_sample_is_the_one_shot_build(sample_sequences, window):
    sequences, num_items, prepared = sample_sequences
    assert len(list(cooccurrence_blocks(sequences, num_items, window, max_memory=HUGE))) == 1
    whole = build_cooccurrence(sequences, num_items, window, max_memory=HUGE)
    budget = about_eight_blocks(whole, 24 if window is None else 48)
    assert 4 <= len(list(cooccurrence_blocks(sequences, num_items, window, max_memory=budget))) <= 40
    assert_same_csr(build_cooccurrence(sequences, num_items, window, max_memory=budget), whole)
    if window is None:
        assert_same_csr(prepared, whole)  # what prepare spilled to disk and zipped block by block


@pytest.mark.parametrize("rule", ["count", "cosine", "pmi"])
def test_blocked_candidates_and_reward_signal_of_the_sample_are_the_one_shot_ones(sample_sequences, rule):
    _, _, cooc = sample_sequences
    budget = about_eight_blocks(cooc, SCORE_BYTES_PER_ENTRY)
    assert 8 <= len(list(stored_row_blocks(cooc, block_entries(budget, SCORE_BYTES_PER_ENTRY, cooc.shape[1])))) <= 9
    for seed, epoch in ((0, 0), (3, 1)):
        assert_same_candidates(
            sample_candidates(cooc, num_positives=2, num_candidates=10, seed=seed, epoch=epoch, rule=rule,
                              max_memory=budget),
            sample_candidates(cooc, num_positives=2, num_candidates=10, seed=seed, epoch=epoch, rule=rule,
                              max_memory=HUGE))
    assert reward_signal(cooc, max_memory=budget) == reward_signal(cooc, max_memory=HUGE)


def test_prepare_records_the_reward_signal_of_its_matrix(sample_sequences, tmp_path):
    # prepare computes it from the spilled blocks; here it is recomputed from the matrix read back
    _, _, cooc = sample_sequences
    folder = tmp_path
    budget = str(about_eight_blocks(cooc, SCORE_BYTES_PER_ENTRY))
    prepare_dataset("seqjson", *sample_dataset_files(), output=folder / "small", max_memory=budget,
                    show_progress=False)
    metadata = json.loads((folder / "small" / "dataset.json").read_text())
    assert metadata["reward_signal"] == json.loads(json.dumps(reward_signal(cooc)))
    assert "max_memory" not in metadata["parameters"]  # it never changes the result
    assert_same_csr(PreparedDataset.load(folder / "small").cooccurrence, cooc)


sequences_strategy = st.lists(st.lists(st.integers(1, 12), min_size=0, max_size=9), min_size=1, max_size=12)


@settings(max_examples=40, deadline=None, database=None)
@given(lists=sequences_strategy, window=st.sampled_from([None, 1, 2, 4]))
def test_blocked_build_equals_the_one_shot_build_for_any_log(lists, window):
    sequences = [np.array(seq, dtype=np.int64) for seq in lists]  # repeats and empty users included
    whole = build_cooccurrence(sequences, 12, window, max_memory=HUGE)
    assert_same_csr(build_cooccurrence(sequences, 12, window, max_memory=TINY), whole)
    dense = np.zeros((13, 13), dtype=np.int64)  # the direct count
    for seq in sequences:
        prefix = seq[:-2]
        for p, a in enumerate(prefix):
            for q, b in enumerate(prefix):
                if a != b and (window is None or abs(p - q) <= window):
                    dense[a, b] += 1
    np.testing.assert_array_equal(whole.toarray(), dense)


@settings(max_examples=25, deadline=None, database=None)
@given(lists=sequences_strategy, seed=st.integers(0, 3), rule=st.sampled_from(["count", "cosine", "pmi"]))
def test_blocked_candidates_and_statistics_equal_the_one_shot_ones_for_any_log(lists, seed, rule):
    sequences = [np.array(seq, dtype=np.int64) for seq in lists] + [np.arange(1, 5)]  # items 13..30: negatives
    cooc = build_cooccurrence(sequences, 30)
    kwargs = dict(num_positives=1, num_candidates=4, seed=seed, rule=rule)
    assert_same_candidates(sample_candidates(cooc, max_memory=TINY, **kwargs),
                           sample_candidates(cooc, max_memory=HUGE, **kwargs))
    with tempfile.TemporaryDirectory() as folder:  # not tmp_path: one folder per example
        spilled = SpilledRows(folder, num_cols=31)
        for block in cooccurrence_blocks(sequences, 30, max_memory=TINY):
            spilled.append(block)
        assert reward_signal(spilled, seed=seed, max_memory=TINY) == reward_signal(cooc, seed=seed, max_memory=HUGE)


class CoarseDraws:
    """A generator whose draws repeat often (tenths), so that ties in the draw itself are ordered too."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def random(self, size):
        return np.round(self.rng.random(size), 1)


def sorted_top_positives(scores, num_positives, rng, item_ids, weights):
    """What `top_positives` computes, by a sort of every entry: row, score descending, draw, position."""
    rows = np.repeat(np.arange(scores.shape[0]), np.diff(scores.indptr))
    order = np.lexsort((rng.random(rows.size), -scores.data, rows))
    rank = np.arange(rows.size) - scores.indptr[rows[order]]
    taken, slot = order[rank < num_positives], rank[rank < num_positives]
    item_ids[rows[taken], slot] = scores.indices[taken]
    weights[rows[taken], slot] = scores.data[taken]
    return np.minimum(np.diff(scores.indptr), num_positives).astype(np.int64)


@settings(max_examples=60, deadline=None, database=None)
@given(dense=st.lists(st.lists(st.sampled_from([0.0, 0.0, 1.0, 2.0, 2.5]), min_size=9, max_size=9), min_size=1,
                      max_size=12), num_positives=st.integers(1, 5), seed=st.integers(0, 3), coarse=st.booleans())
def test_top_positives_are_those_of_sorting_every_entry(dense, num_positives, seed, coarse):
    scores = sp.csr_matrix(np.array(dense))
    results = []
    for rank in (top_positives, sorted_top_positives):
        item_ids, weights = np.zeros((scores.shape[0], 6), dtype=np.int64), np.zeros((scores.shape[0], 6), np.float32)
        rng = CoarseDraws(seed) if coarse else np.random.default_rng(seed)
        results.append((rank(scores, num_positives, rng, item_ids, weights), item_ids, weights))
    for new, old in zip(*results):
        np.testing.assert_array_equal(new, old)


def test_spilled_rows_read_back_in_blocks_and_save_the_npz_scipy_writes(tmp_path):
    rng = np.random.default_rng(0)
    matrix = sp.random(50, 40, density=0.2, format="csr", random_state=1, dtype=np.float64)
    matrix.data = rng.integers(1, 100, size=matrix.nnz).astype(np.int32)
    matrix = matrix.astype(np.int32)
    spilled = SpilledRows(tmp_path / "spill", num_cols=40)
    for start, stop in ((0, 7), (7, 8), (8, 50)):
        spilled.append(matrix[start:stop])
    assert spilled.shape == (50, 40)
    np.testing.assert_array_equal(spilled.row_sums(), np.asarray(matrix.sum(axis=1)).ravel())
    blocks = list(stored_row_blocks(spilled, 30))
    assert len(blocks) > 10 and all(block.nnz <= 30 or block.shape[0] == 1 for _, block in blocks)
    assert_same_csr(sp.vstack([block for _, block in blocks], format="csr"), matrix)
    assert [start for start, _ in blocks] == [start for start, _ in stored_row_blocks(matrix, 30)]
    spilled.save_npz(tmp_path / "spilled.npz")
    sp.save_npz(tmp_path / "scipy.npz", matrix)
    spilled_back, scipy_back = np.load(tmp_path / "spilled.npz"), np.load(tmp_path / "scipy.npz")
    assert sorted(spilled_back.files) == sorted(scipy_back.files)
    for name in scipy_back.files:
        np.testing.assert_array_equal(spilled_back[name], scipy_back[name])
        assert spilled_back[name].dtype == scipy_back[name].dtype
    assert_same_csr(sp.load_npz(tmp_path / "spilled.npz"), matrix)


def test_row_blocks_cover_every_row_within_the_limit():
    entries = np.array([3, 0, 5, 2, 9, 1, 1, 0, 4])
    blocks = row_blocks(entries, 6)
    assert blocks == [(0, 2), (2, 3), (3, 4), (4, 5), (5, 9)]  # row 4 alone holds more than 6
    assert row_blocks(np.zeros(4, dtype=np.int64), 1) == [(0, 4)]


def test_block_size_follows_the_budget_left_above_the_resident_memory(monkeypatch):  # overrides the fixture
    monkeypatch.setattr(cooc_module, "_resident_bytes", lambda: 1000)
    assert block_entries(1000 + 24 * 5000, 24, 100) == 5000
    assert block_entries(10, 24, 100) == 100  # over budget already: the floor, one block per catalogue width
    product_blocks = list(cooccurrence_blocks([np.arange(1, 40)] * 3, 50, max_memory=1000 + 24 * 200))
    assert len(product_blocks) > 3 and all(block.nnz <= 200 for block in product_blocks)


def test_the_default_budget_is_a_quarter_of_a_container_limit_below_the_machine_memory(monkeypatch, tmp_path):
    machine = cooc_module.default_max_memory()
    (tmp_path / "v2").write_text("max\n")  # no limit
    (tmp_path / "v1").write_text(f"{1 << 30}\n")
    monkeypatch.setattr(cooc_module, "_CGROUP_LIMITS", (str(tmp_path / "v2"), str(tmp_path / "missing")))
    assert cooc_module.default_max_memory() == machine
    monkeypatch.setattr(cooc_module, "_CGROUP_LIMITS", (str(tmp_path / "v2"), str(tmp_path / "v1")))
    assert cooc_module.default_max_memory() == min(machine, (1 << 30) // 4)


@pytest.mark.parametrize("text, expected", [("4GiB", 4 << 30), ("4G", 4 << 30), ("4gb", 4 << 30),
                                            ("512MiB", 512 << 20), ("1.5K", 1536), ("4096", 4096), (8192, 8192)])
def test_memory_sizes_parse(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "-1G", "0", "4 GiBs", "G4"])
def test_bad_memory_sizes_are_refused_before_any_file_is_read(text, tmp_path):
    with pytest.raises(InputError, match="--max-memory"):
        PrepareOptions(max_memory=text)
    with pytest.raises(InputError, match="--max-memory"):
        prepare_dataset("csv", tmp_path / "missing.csv", output=tmp_path / "out", max_memory=text)
    assert not (tmp_path / "out").exists()


def test_sparsity_counts_distinct_pairs_when_repeats_are_kept(tmp_path):
    # one user visiting item 1 three times and item 2 twice: 5 interactions in a 1 x 2 matrix, both cells filled
    (tmp_path / "inter.json").write_text(json.dumps({"u1": [1, 1, 2, 1, 2], "u2": [1, 2, 2]}))
    with pytest.warns(UserWarning, match="no item file"):
        out = prepare_dataset("seqjson", tmp_path / "inter.json", output=tmp_path / "out", show_progress=False)
    counts = json.loads((out / "dataset.json").read_text())["counts"]
    assert counts["interactions"] == 8 and counts["sparsity"] == 0.0
    assert counts["mean_length"] == 4.0  # interactions still count every visit


def test_prepare_cli_takes_the_bundled_sample_as_recipes_do(tmp_path, capsys):
    assert prepare_main(["--interactions", "bundled", "--output", str(tmp_path / "a"), "--show-progress",
                         "false"]) == 0
    assert "prepared" in capsys.readouterr().out
    metadata = json.loads((tmp_path / "a" / "dataset.json").read_text())
    inter, items = sample_dataset_files()
    assert metadata["source_format"] == "seqjson" and metadata["counts"]["items"] == 2420
    assert metadata["inputs"]["interactions"]["path"] == str(inter.resolve())
    assert metadata["inputs"]["items"]["path"] == str(items.resolve())  # items default to the bundled ones
    assert metadata["counts"]["items_with_text"] == 2420
    prepare_main(["seqjson", "--interactions", str(inter), "--items", "bundled", "--output", str(tmp_path / "b"),
                  "--show-progress", "false"])
    assert json.loads((tmp_path / "b" / "dataset.json").read_text())["sha256"] == metadata["sha256"]
    with pytest.raises(InputError, match="bundled sample is in format seqjson, not 'csv'"):
        prepare_main(["csv", "--interactions", "bundled", "--output", str(tmp_path / "c")])
    with pytest.raises(InputError, match="give the source FORMAT"):
        prepare_main(["--interactions", str(inter), "--output", str(tmp_path / "d")])
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()
