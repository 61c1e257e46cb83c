"""Tables in every export format, and from other tools, read by downstream evaluation (`load_table`, which
`evaluate` and `compare` use): lined up with the dataset's items by their id map, refused by name when the ids or
the row count do not match; and `reaemb-trl convert`, which rewrites a table in another format unchanged."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reaemb_trl.data import PreparedDataset
from reaemb_trl.downstream.evaluate import evaluate, load_table
from reaemb_trl.errors import InputError
from reaemb_trl.export import TABLE_FORMATS
from reaemb_trl.export.cli import convert_main
from reaemb_trl.export.formats import table_path, write_table


@pytest.fixture(scope="module")
def dataset(small_dataset):
    return PreparedDataset.load(small_dataset)


@pytest.fixture(scope="module")
def table(dataset):
    """A table as export lays it out: row 0 zeros, row i = item i."""
    rows = np.random.default_rng(0).normal(size=(dataset.num_items + 1, 6)).astype(np.float32)
    rows[0] = 0
    return rows


def _write(table_format, folder, table, dataset, **metadata):
    return write_table(table_format, folder / "t", table, dataset.source_ids,
                       {"model": "m", "dataset_sha256": dataset.sha256, **metadata}, {"similarity": "cosine"})


def _parquet(path, **columns):
    pq.write_table(pa.table(columns), path)
    return path


@pytest.mark.parametrize("table_format", TABLE_FORMATS)
def test_every_export_format_loads_as_the_same_table(table_format, dataset, table, tmp_path):
    path = _write(table_format, tmp_path, table, dataset)
    np.testing.assert_array_equal(load_table(path, dataset), table)


def test_evaluate_trains_on_an_npy_table(small_dataset, dataset, table, tmp_path):
    """Reported: an npy table failed with "header too large" (it was read as safetensors)."""
    path = _write("npy", tmp_path, table, dataset)
    record = evaluate(small_dataset, path, recommender="sasrec", protocol="full", epochs=1, patience=1, max_items=20,
                      show_progress=False)
    assert record["embeddings"] == str(path) and record["epochs_run"] == 1


def test_a_plain_npy_follows_the_dataset_order(dataset, table, tmp_path):
    np.save(tmp_path / "items.npy", table[1:])  # N rows: items 1..N, as LLM-ESR-style code keeps them
    np.testing.assert_array_equal(load_table(tmp_path / "items.npy", dataset), table)
    np.save(tmp_path / "padded.npy", table.astype(np.float64))  # N + 1 rows: the padding row first
    np.testing.assert_array_equal(load_table(tmp_path / "padded.npy", dataset), table)
    np.save(tmp_path / "short.npy", table[2:])
    with pytest.raises(InputError, match=rf"short.npy: {dataset.num_items - 1} rows and no id map, but the "
                                         rf"dataset has {dataset.num_items} items"):
        load_table(tmp_path / "short.npy", dataset)
    np.save(tmp_path / "ids.npy", np.arange(dataset.num_items))
    with pytest.raises(InputError, match="ids.npy: expected floating-point rows"):
        load_table(tmp_path / "ids.npy", dataset)


def test_an_id_map_puts_shuffled_rows_in_place(dataset, table, tmp_path):
    order = np.random.default_rng(1).permutation(dataset.num_items)
    np.save(tmp_path / "shuffled.npy", table[1:][order])
    ids = [dataset.source_ids[k] for k in order]
    (tmp_path / "shuffled.npy.ids.json").write_text(json.dumps(ids))
    np.testing.assert_array_equal(load_table(tmp_path / "shuffled.npy", dataset), table)

    cases = [(ids[:-1], f"1 of the dataset's {dataset.num_items} items have no row .*{ids[-1]!r}"),
             ([*ids[:-1], ids[0]], f"source id {ids[0]!r} appears more than once"),
             ([*ids[:-1], "not-an-item"], r"1 source ids are not items of the dataset \(first: \['not-an-item'\]\)")]
    for bad_ids, message in cases:
        np.save(tmp_path / "bad.npy", table[1:][order][: len(bad_ids)])
        (tmp_path / "bad.npy.ids.json").write_text(json.dumps(bad_ids))
        with pytest.raises(InputError, match=f"bad.npy: {message}"):
            load_table(tmp_path / "bad.npy", dataset)


def test_a_parquet_table_from_another_tool(dataset, table, tmp_path):
    order = np.random.default_rng(2).permutation(dataset.num_items)
    vectors = [row.tolist() for row in table[1:][order]]  # variable-length lists, as pandas writes them
    by_source = _parquet(tmp_path / "by_source.parquet", source_item_id=[dataset.source_ids[k] for k in order],
                         embedding=vectors)
    np.testing.assert_array_equal(load_table(by_source, dataset), table)
    by_row = _parquet(tmp_path / "by_row.parquet", row=(order + 1).tolist(), embedding=vectors)
    np.testing.assert_array_equal(load_table(by_row, dataset), table)

    wrong_row = _parquet(tmp_path / "wrong_row.parquet", row=list(range(1, dataset.num_items + 1)),
                         source_item_id=[dataset.source_ids[k] for k in order], embedding=vectors)
    with pytest.raises(InputError, match=f"source_item_id {dataset.source_ids[order[0]]!r} has row 1, but it is "
                                         f"item {order[0] + 1} of the dataset"):
        load_table(wrong_row, dataset)
    old = _parquet(tmp_path / "old.parquet", item_id=dataset.source_ids, embedding=vectors)
    with pytest.raises(InputError, match="old.parquet: column 'item_id' is ambiguous.*'source_item_id'.*'row'"):
        load_table(old, dataset)
    no_ids = _parquet(tmp_path / "no_ids.parquet", embedding=vectors)
    with pytest.raises(InputError, match=r"expected an id column .* found \['embedding'\]"):
        load_table(no_ids, dataset)
    out_of_range = _parquet(tmp_path / "range.parquet", row=list(range(2, dataset.num_items + 2)), embedding=vectors)
    with pytest.raises(InputError, match=rf"1 rows are not items of the dataset \(first: \[{dataset.num_items + 1}\]"):
        load_table(out_of_range, dataset)


def test_a_table_of_another_dataset_is_refused_in_every_format(dataset, table, tmp_path):
    for table_format in TABLE_FORMATS:
        path = _write(table_format, tmp_path, table, dataset, dataset_sha256="f" * 64)
        with pytest.raises(InputError, match="exported from another dataset"):
            load_table(path, dataset)


def test_nan_rows_are_refused_in_every_format(dataset, table, tmp_path):
    broken = table.copy()
    broken[4, 2] = np.nan
    for table_format in TABLE_FORMATS:
        with pytest.raises(InputError, match=r"1 rows hold NaN or inf values \(item ids \[4\]\)"):
            load_table(_write(table_format, tmp_path, broken, dataset), dataset)


@pytest.mark.parametrize("source_format", TABLE_FORMATS)
def test_convert_writes_every_format_with_the_same_rows_and_metadata(source_format, small_dataset, dataset, table,
                                                                     tmp_path):
    source = _write(source_format, tmp_path / "source", table, dataset)
    for table_format in TABLE_FORMATS:
        output = tmp_path / "converted" / f"c_{table_format}"
        assert convert_main(["--table", str(source), "--data", str(small_dataset), "--output", str(output),
                             "--format", table_format]) == 0
        converted = table_path(table_format, output)
        np.testing.assert_array_equal(load_table(converted, dataset), table)
    parquet = pq.read_schema(table_path("parquet", tmp_path / "converted" / "c_parquet")).metadata
    assert parquet[b"model"] == b"m" and parquet[b"similarity"] == b"cosine"
    assert parquet[b"converted_from"] == str(source).encode() and parquet[b"format"] == b"parquet"


def test_convert_refuses_before_writing(small_dataset, dataset, table, tmp_path):
    np.save(tmp_path / "short.npy", table[2:])
    with pytest.raises(InputError, match="short.npy: .* rows and no id map"):
        convert_main(["--table", str(tmp_path / "short.npy"), "--data", str(small_dataset),
                      "--output", str(tmp_path / "out"), "--format", "parquet"])
    source = _write("npy", tmp_path, table, dataset)
    with pytest.raises(InputError, match="the output is the input"):
        convert_main(["--table", str(source), "--data", str(small_dataset), "--output", str(source),
                      "--format", "npy", "--overwrite"])
    assert not list(tmp_path.glob("out*"))


def test_damaged_or_foreign_files_are_named(dataset, table, tmp_path):
    np.save(tmp_path / "whole.npy", table)
    (tmp_path / "cut.npy").write_bytes((tmp_path / "whole.npy").read_bytes()[:200])
    (tmp_path / "text.parquet").write_text("not parquet")
    (tmp_path / "header.itememb").write_text("iid:token\titem_emb:float\n")
    first = dataset.source_ids[0]
    (tmp_path / "values.itememb").write_text(f"iid:token\titem_emb:float_seq\n{first}\t0.5 x\n")
    strings = _parquet(tmp_path / "strings.parquet", source_item_id=dataset.source_ids,
                       embedding=[["a"]] * dataset.num_items)
    cases = [("cut.npy", "cut.npy: not a readable .npy array file"),
             ("text.parquet", "text.parquet: not a readable parquet file"),
             ("header.itememb", r"header.itememb, line 1: expected the columns 'iid:token<TAB>item_emb:float_seq'"),
             ("values.itememb", "values.itememb, line 2: expected 'id<TAB>numbers separated by spaces'"),
             (strings.name, "strings.parquet: column 'embedding' must hold one list of floats per row")]
    for name, message in cases:
        with pytest.raises(InputError, match=message):
            load_table(tmp_path / name, dataset)
