"""`reaemb-trl export --format`: each format's files read back with plain numpy / pyarrow / text parsing, the
source-id map, the metadata (similarity, normalisation, padding row), atomic writes, refusals, and RecBole itself
when it is installed."""

import importlib.util
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from safetensors import safe_open
from safetensors.numpy import load_file as safetensors_load_file

from reaemb_trl.cli import main as cli_main
from reaemb_trl.crrl import CRRLConfig
from reaemb_trl.data import PreparedDataset, load_embedding_table
from reaemb_trl.embedder import LatentReasoningEmbedder
from reaemb_trl.errors import InputError
from reaemb_trl.export import ExportOptions, export_item_table, trained_similarity
from reaemb_trl.export.formats import table_writer, write_table
from reaemb_trl.export.similarity import LOSS_SIMILARITY
from reaemb_trl.io_utils import write_json
from reaemb_trl.lrcl import LRCLConfig
from reaemb_trl.lrcl.losses import LOSSES
from reaemb_trl.recipe import config_to_dict

HEADER_KEYS = ["model", "execution_path", "pooling", "dim", "num_items", "dataset_sha256"]


@pytest.fixture(scope="module")
def lrcl_dir(tiny_embedder_folder, tmp_path_factory):
    """The tiny embedder folder with the lrcl_config.json an LRCL run writes beside it (soft_clip: dot products)."""
    folder = tmp_path_factory.mktemp("formats_model") / "lrcl"
    shutil.copytree(tiny_embedder_folder, folder)
    (folder / "lrcl_config.json").write_text(json.dumps({"loss": "soft_clip", "max_steps": 3}))
    return folder


@pytest.fixture(scope="module")
def reference(small_dataset, lrcl_dir, tmp_path_factory):
    """The default export (safetensors) of the tiny folder: the table every other format must reproduce."""
    output = tmp_path_factory.mktemp("reference") / "items.safetensors"
    assert _export(lrcl_dir, small_dataset, output) == 0
    table, header = load_embedding_table(output)
    return output, table, header


def _export(model, data, output, *extra):
    return cli_main(["export", "--model", str(model), "--data", str(data), "--output", str(output),
                     "--batch-size", "16", "--no-progress", *extra])


def _expected_metadata(header, table_format, padding_row, normalized="false"):
    return {**header, "similarity": "dot", "normalized": normalized, "format": table_format,
            "padding_row": padding_row}


def _no_temporary_files(folder):
    return not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_safetensors_stays_the_default_and_gets_ids_and_metadata_beside_it(reference, small_dataset, lrcl_dir):
    output, table, header = reference
    dataset = PreparedDataset.load(small_dataset)
    assert sorted(p.name for p in output.parent.iterdir()) == ["items.safetensors", "items.safetensors.ids.json",
                                                               "items.safetensors.meta.json"]
    assert table.shape == (dataset.num_items + 1, 64) and not table[0].any()
    assert header == {"model": str(lrcl_dir), "execution_path": "fast", "pooling": "mean", "dim": "64",
                      "num_items": str(dataset.num_items), "dataset_sha256": dataset.sha256}
    ids = json.loads((output.parent / "items.safetensors.ids.json").read_text())
    assert ids == [None, *dataset.source_ids] and len(ids) == table.shape[0]
    assert len(set(ids[1:])) == dataset.num_items
    metadata = json.loads((output.parent / "items.safetensors.meta.json").read_text())
    assert metadata == _expected_metadata(header, "safetensors", "included")


def test_npy_holds_items_without_the_padding_row(reference, small_dataset, lrcl_dir, tmp_path):
    """Written beside a safetensors table of the same NAME: each keeps its own id map (their rows differ by one)."""
    _, table, header = reference
    dataset = PreparedDataset.load(small_dataset)
    assert _export(lrcl_dir, small_dataset, tmp_path / "items.safetensors") == 0
    assert _export(lrcl_dir, small_dataset, tmp_path / "items", "--format", "npy") == 0
    assert sorted(p.name for p in tmp_path.iterdir() if ".npy" in p.name) == [
        "items.npy", "items.npy.ids.json", "items.npy.meta.json"]
    rows = np.load(tmp_path / "items.npy", allow_pickle=False)
    assert rows.dtype == np.float32 and rows.shape == (dataset.num_items, 64)
    np.testing.assert_array_equal(rows, table[1:])
    assert json.loads((tmp_path / "items.npy.ids.json").read_text()) == dataset.source_ids
    assert json.loads((tmp_path / "items.safetensors.ids.json").read_text()) == [None, *dataset.source_ids]
    metadata = json.loads((tmp_path / "items.npy.meta.json").read_text())
    assert metadata == _expected_metadata(header, "npy", "excluded")
    # LLM-ESR-style code puts its own zero row in front: then row i is item i again, as in the safetensors table
    np.testing.assert_array_equal(np.vstack([np.zeros((1, 64), np.float32), rows]), table)


def test_parquet_is_one_file_with_ids_vectors_and_schema_metadata(reference, small_dataset, lrcl_dir, tmp_path):
    _, table, header = reference
    dataset = PreparedDataset.load(small_dataset)
    assert _export(lrcl_dir, small_dataset, tmp_path / "items.parquet", "--format", "parquet") == 0
    assert [p.name for p in tmp_path.iterdir()] == ["items.parquet"]
    read = pq.read_table(tmp_path / "items.parquet")
    # each id column says what it holds: the item id of items.jsonl (the row) and the id of the raw data
    assert read.column_names == ["row", "source_item_id", "embedding"]
    assert read.schema.field("embedding").type == pa.list_(pa.float32(), 64)
    assert read.column("row").to_pylist() == list(range(1, dataset.num_items + 1))
    assert read.column("source_item_id").to_pylist() == dataset.source_ids
    vectors = read.column("embedding").combine_chunks().flatten().to_numpy().reshape(-1, 64)
    np.testing.assert_array_equal(vectors, table[1:])
    metadata = {key.decode(): value.decode() for key, value in read.schema.metadata.items()}
    assert metadata == _expected_metadata(header, "parquet", "excluded")

    import pandas as pd

    frame = pd.read_parquet(tmp_path / "items.parquet")
    item = dataset.source_ids[4]
    np.testing.assert_array_equal(np.asarray(frame.set_index("source_item_id").loc[item, "embedding"]), table[5])
    np.testing.assert_array_equal(np.asarray(frame.set_index("row").loc[5, "embedding"]), table[5])


def test_recbole_atomic_file_and_settings(reference, small_dataset, lrcl_dir, tmp_path, capsys):
    _, table, header = reference
    dataset = PreparedDataset.load(small_dataset)
    assert _export(lrcl_dir, small_dataset, tmp_path / "office", "--format", "recbole") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["office.itememb", "office.itememb.meta.json",
                                                          "office.recbole.yaml"]
    lines = (tmp_path / "office.itememb").read_text(encoding="utf-8").split("\n")
    assert lines[0] == "iid:token\titem_emb:float_seq" and lines[-1] == ""
    body = [line.split("\t") for line in lines[1:-1]]
    assert all(len(fields) == 2 for fields in body)
    assert [fields[0] for fields in body] == dataset.source_ids
    vectors = np.array([[float(value) for value in fields[1].split(" ")] for fields in body], dtype=np.float32)
    np.testing.assert_array_equal(vectors, table[1:])  # the text holds enough digits to give the float32 back

    settings = yaml.safe_load((tmp_path / "office.recbole.yaml").read_text())
    assert settings == {"additional_feat_suffix": ["itememb"],
                        "load_col": {"inter": ["user_id", "item_id", "timestamp"], "itememb": ["iid", "item_emb"]},
                        "alias_of_item_id": ["iid"], "preload_weight": {"iid": "item_emb"}, "normalize_all": False}
    printed = capsys.readouterr().out
    assert f"wrote {tmp_path / 'office.itememb'}" in printed
    assert (tmp_path / "office.recbole.yaml").read_text() in printed
    metadata = json.loads((tmp_path / "office.itememb.meta.json").read_text())
    assert metadata == _expected_metadata(header, "recbole", "excluded")


def test_normalize_gives_unit_rows_in_the_model_directions(reference, small_dataset, lrcl_dir, tmp_path):
    _, table, header = reference
    assert _export(lrcl_dir, small_dataset, tmp_path / "unit.npy", "--format", "npy", "--normalize") == 0
    rows = np.load(tmp_path / "unit.npy", allow_pickle=False)
    assert np.abs(np.linalg.norm(table[1:], axis=1) - 1).min() > 0.1  # the raw rows are far from unit length
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(rows, table[1:] / np.linalg.norm(table[1:], axis=1, keepdims=True), rtol=1e-6)
    metadata = json.loads((tmp_path / "unit.npy.meta.json").read_text())
    assert metadata == _expected_metadata(header, "npy", "excluded", normalized="true")


def test_normalize_with_pca_keeps_both_safetensors_tables_unit(small_dataset, lrcl_dir, tmp_path):
    dataset = PreparedDataset.load(small_dataset)
    assert _export(lrcl_dir, small_dataset, tmp_path / "unit.safetensors", "--normalize", "--pca", "8") == 0
    table, _ = load_embedding_table(tmp_path / "unit.safetensors", num_items=dataset.num_items)
    reduced, _ = load_embedding_table(tmp_path / "unit.pca8.safetensors", num_items=dataset.num_items)
    assert not table[0].any() and not reduced[0].any()
    np.testing.assert_allclose(np.linalg.norm(table[1:], axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(reduced[1:], axis=1), 1.0, rtol=1e-6)
    with safe_open(str(tmp_path / "unit.pca8.safetensors"), framework="numpy") as handle:
        components, mean = handle.get_tensor("pca_components"), handle.get_tensor("pca_mean")
    projected = (table[1:] - mean) @ components.T
    np.testing.assert_allclose(projected / np.linalg.norm(projected, axis=1, keepdims=True), reduced[1:],
                               rtol=1e-4, atol=1e-5)
    pca_metadata = json.loads((tmp_path / "unit.pca8.safetensors.meta.json").read_text())
    assert pca_metadata["dim"] == "8" and pca_metadata["normalized"] == "true"
    assert json.loads((tmp_path / "unit.pca8.safetensors.ids.json").read_text()) == [None, *dataset.source_ids]
    assert _no_temporary_files(tmp_path)


def test_similarity_comes_from_the_stage_settings_in_the_folder(tmp_path):
    """The settings files are written as the stages write them, so a renamed key fails here."""
    assert set(LOSS_SIMILARITY) == set(LOSSES)  # a new LRCL loss must say what it compares
    folder = tmp_path / "model"
    folder.mkdir()
    assert trained_similarity(folder) == "unknown"  # a raw backbone export: no stage trained it
    assert trained_similarity(None) == "unknown" and trained_similarity("") == "unknown"
    for loss, similarity in (("infonce", "cosine"), ("soft_clip", "dot")):
        write_json(folder / "lrcl_config.json", config_to_dict(LRCLConfig(loss=loss)))
        assert trained_similarity(folder) == similarity
    crrl = CRRLConfig(output_dir=str(tmp_path / "crrl"), similarity="cosine")
    write_json(folder / "crrl_config.json", crrl.to_dict())
    assert trained_similarity(folder) == "cosine"  # CRRL trained last
    (folder / "crrl_config.json").write_text("{not json")
    with pytest.raises(InputError, match="crrl_config.json"):
        trained_similarity(folder)


def test_metadata_says_unknown_for_a_folder_no_stage_trained(small_dataset, lrcl_dir, tmp_path):
    dataset = PreparedDataset.load(small_dataset)
    raw = LatentReasoningEmbedder.from_pretrained(lrcl_dir)
    raw.save_pretrained(tmp_path / "raw")  # an embedder folder without lrcl_config.json
    export_item_table(raw, dataset, tmp_path / "raw.parquet",
                      ExportOptions(batch_size=16, show_progress=False, table_format="parquet"),
                      model_name=str(tmp_path / "raw"))
    metadata = pq.read_schema(tmp_path / "raw.parquet").metadata
    assert metadata[b"similarity"] == b"unknown" and metadata[b"model"] == str(tmp_path / "raw").encode()


def test_refusals_come_before_any_file_is_written(small_dataset, lrcl_dir, tmp_path, capsys):
    dataset = PreparedDataset.load(small_dataset)
    out = tmp_path / "out"
    cases = [
        (["--format", "csv"], "--format 'csv': unknown format \\(known: safetensors, npy, parquet, recbole\\)"),
        (["--format", "npy", "--pca", "8"], "--pca works with --format safetensors only"),
        (["--format", "recbole", "--pca", "8"], "got --format recbole"),
    ]
    for extra, message in cases:
        assert _export(lrcl_dir, small_dataset, out / "items", *extra) == 2
        assert re.search(message, capsys.readouterr().err)
    assert _export(lrcl_dir, small_dataset, out / "items.safetensors", "--format", "npy") == 2
    assert "the suffix .safetensors belongs to --format safetensors, not --format npy" in capsys.readouterr().err
    assert _export(lrcl_dir, small_dataset, out / "items.npy") == 2
    assert "belongs to --format npy" in capsys.readouterr().err
    embedder = LatentReasoningEmbedder.from_pretrained(lrcl_dir)
    with pytest.raises(InputError, match="unknown format"):
        export_item_table(embedder, dataset, out / "items", ExportOptions(table_format="pickle"))
    assert not out.exists()


def test_recbole_refuses_ids_that_would_break_its_file(small_dataset, lrcl_dir, tmp_path, monkeypatch):
    table = np.arange(12, dtype=np.float32).reshape(3, 4)
    with pytest.raises(InputError, match=r"'b\\tc'.*tab, a line break or a double quote"):
        write_table("recbole", tmp_path / "t", table, ["a", "b\tc"], {"model": "m"}, {"similarity": "dot"})
    dataset = PreparedDataset.load(small_dataset)
    dataset.source_ids[3] = 'say "hi"'
    embedder = LatentReasoningEmbedder.from_pretrained(lrcl_dir)
    monkeypatch.setattr(embedder, "encode", lambda *a, **k: pytest.fail("the ids are checked before encoding"))
    with pytest.raises(InputError, match="double quote"):
        export_item_table(embedder, dataset, tmp_path / "office", ExportOptions(table_format="recbole"))
    assert list(tmp_path.iterdir()) == []


def test_every_format_reproduces_exact_float32_values(tmp_path):
    """Values that need all nine significant digits (and signs, tiny and huge magnitudes) come back bit for bit."""
    rng = np.random.default_rng(0)
    table = np.zeros((4, 5), dtype=np.float32)
    table[1:] = rng.normal(size=(3, 5)) * np.array([1e-30, 1.0, 3e30], dtype=np.float32)[:, None]
    table[2, 0] = np.nextafter(np.float32(1), np.float32(2))
    ids = ["A1", "b 2", "3"]
    for table_format in ("npy", "parquet", "recbole"):
        write_table(table_format, tmp_path / "t", table, ids, {"model": "m"}, {"similarity": "dot"})
    np.testing.assert_array_equal(np.load(tmp_path / "t.npy", allow_pickle=False), table[1:])
    read = pq.read_table(tmp_path / "t.parquet")
    np.testing.assert_array_equal(read.column("embedding").combine_chunks().flatten().to_numpy().reshape(3, 5),
                                  table[1:])
    assert read.column("source_item_id").to_pylist() == ids and read.column("row").to_pylist() == [1, 2, 3]
    lines = (tmp_path / "t.itememb").read_text().splitlines()[1:]
    assert [line.split("\t")[0] for line in lines] == ids
    parsed = np.array([[float(v) for v in line.split("\t")[1].split(" ")] for line in lines], dtype=np.float32)
    np.testing.assert_array_equal(parsed, table[1:])
    assert _no_temporary_files(tmp_path)


@pytest.mark.parametrize("table_format", ["safetensors", "npy", "parquet", "recbole"])
def test_a_table_written_in_blocks_is_the_table_written_at_once(table_format, tmp_path):
    """Export streams its rows: blocks of any size give the file of one write; a writer left before the last
    row raises and leaves no file behind, companions included."""
    rng = np.random.default_rng(1)
    table = rng.normal(size=(12, 3)).astype(np.float32)
    table[0] = 0
    ids = [f"i{k}" for k in range(1, 12)]
    whole = write_table(table_format, tmp_path / "whole", table, ids, {"model": "m"}, {"similarity": "dot"})
    with table_writer(table_format, tmp_path / "blocks", 3, ids, {"model": "m"}, {"similarity": "dot"}) as append:
        for start, stop in ((1, 2), (2, 7), (7, 7), (7, 12)):
            append(table[start:stop])
    split = whole.with_name(whole.name.replace("whole", "blocks"))
    if table_format == "parquet":  # one row group per block: the same table, in other bytes
        assert pq.read_table(split).equals(pq.read_table(whole), check_metadata=True)
    else:
        assert split.read_bytes() == whole.read_bytes()
    if table_format == "safetensors":
        np.testing.assert_array_equal(safetensors_load_file(split)["embeddings"], table)  # the library's reader

    with pytest.raises(ValueError, match=r"[56] of 1[12] rows were written"):
        with table_writer(table_format, tmp_path / "short", 3, ids, {"model": "m"}, {}) as append:
            append(table[1:6])
    with pytest.raises(ValueError, match="does not fit"):
        with table_writer(table_format, tmp_path / "wide", 3, ids, {"model": "m"}, {}) as append:
            append(np.zeros((2, 4), dtype=np.float32))
    assert not list(tmp_path.glob("short*")) and not list(tmp_path.glob("wide*"))  # no table, no companions
    assert _no_temporary_files(tmp_path)


RECBOLE_LOADER = """
import json, sys
import numpy as np

# RecBole 1.2.1's Config aliases np.float_, np.complex_ and np.unicode_, which NumPy 2 removed.
for old, new in {"float_": np.float64, "complex_": np.complex128, "unicode_": np.str_}.items():
    if old not in dir(np):
        setattr(np, old, new)
from recbole.config import Config
from recbole.data import create_dataset

data_path, name, settings, tokens = sys.argv[1:5]
config = Config(model="SASRec", dataset=name, config_file_list=[settings],
                config_dict={"data_path": data_path, "use_gpu": False, "show_progress": False,
                             "train_neg_sample_args": None, "save_dataset": False})
dataset = create_dataset(config)
weight = dataset.get_preload_weight("iid")
tokens = json.loads(tokens)
print(json.dumps({"shape": list(weight.shape), "padding": weight[0].tolist(),
                  "rows": [weight[dataset.token2id("item_id", token)].tolist() for token in tokens]}))
"""


@pytest.mark.skipif(importlib.util.find_spec("recbole") is None,
                    reason="RecBole is not installed here (pip install recbole==1.2.1 to run this check)")
def test_recbole_loads_the_table_as_its_pretrained_item_embedding(reference, small_dataset, lrcl_dir, tmp_path):
    """RecBole's own dataset code reads the .itememb file with the written settings; its preload matrix row of an
    item (RecBole's own numbering) is the exported row. RecBole runs in its own process: its Config patches numpy
    attributes process-wide."""
    _, table, _ = reference
    dataset = PreparedDataset.load(small_dataset)
    folder = tmp_path / "office"
    assert _export(lrcl_dir, small_dataset, folder / "office", "--format", "recbole") == 0
    with open(folder / "office.inter", "w", encoding="utf-8") as inter:
        inter.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for user, sequence in enumerate(dataset.sequences, start=1):
            inter.writelines(f"u{user}\t{dataset.source_ids[item - 1]}\t{step}\n"
                             for step, item in enumerate(sequence))
    items = [1, 7, dataset.num_items]
    tokens = [dataset.source_ids[item - 1] for item in items]
    result = subprocess.run([sys.executable, "-c", RECBOLE_LOADER, str(tmp_path), "office",
                             str(folder / "office.recbole.yaml"), json.dumps(tokens)],
                            check=False, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["shape"] == [dataset.num_items + 1, 64]
    assert not any(loaded["padding"])
    for item, row in zip(items, loaded["rows"]):
        np.testing.assert_array_equal(np.asarray(row, dtype=np.float32), table[item])
