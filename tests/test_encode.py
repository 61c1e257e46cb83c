"""`reaemb-trl encode` and `reaemb_trl.export.encode`: new items from a raw item file (the texts prepare builds) or
plain texts, rows equal to export's for the same items in every format, and the sentence-transformers keywords."""

import json

import numpy as np
import pytest
import torch

from reaemb_trl.data import PreparedDataset
from reaemb_trl.data.embedding_table import read_item_table
from reaemb_trl.embedder.loading import LoadingOptions
from reaemb_trl.errors import InputError
from reaemb_trl.export import TABLE_FORMATS, ExportOptions, export_item_table
from reaemb_trl.export.cli import encode_main
from reaemb_trl.export.formats import table_path
from reaemb_trl.export.new_items import encode, item_file_texts


@pytest.fixture(scope="module")
def exported(small_dataset, tiny_embedder_folder, tmp_path_factory):
    """export's table of the small dataset: what encode must reproduce for the same items."""
    from reaemb_trl.embedder import LatentReasoningEmbedder

    dataset = PreparedDataset.load(small_dataset)
    output = tmp_path_factory.mktemp("encode_reference") / "items.safetensors"
    export_item_table(LatentReasoningEmbedder.from_pretrained(tiny_embedder_folder), dataset, output,
                      ExportOptions(batch_size=16, show_progress=False), model_name=str(tiny_embedder_folder))
    return read_item_table(output, dataset.source_ids)[0]


def _encode(*argv):
    return encode_main(["--batch_size", "16", "--no_show_progress", *map(str, argv)])


def test_item_file_texts_are_the_texts_prepare_built(small_dataset):
    dataset = PreparedDataset.load(small_dataset)
    ids, texts = item_file_texts(small_dataset.parent / "item.json", "seqjson")
    assert ids == dataset.source_ids  # the small dataset keeps every item of its item file, in file order
    assert texts == dataset.item_texts[1:]
    _, cut = item_file_texts(small_dataset.parent / "item.json", "seqjson", max_value_chars=5)
    title = cut[0].split("; ")[0]
    assert title.startswith("title is ") and len(title) <= len("title is ") + 5 and len(cut[0]) < len(texts[0])


@pytest.mark.parametrize("table_format", TABLE_FORMATS)
def test_items_encode_to_the_rows_export_writes(table_format, small_dataset, tiny_embedder_folder, exported,
                                                tmp_path):
    dataset = PreparedDataset.load(small_dataset)
    assert _encode("--model", tiny_embedder_folder, "--items", small_dataset.parent / "item.json",
                   "--format", "seqjson", "--output", tmp_path / "new", "--format_out", table_format) == 0
    rows, metadata = read_item_table(table_path(table_format, tmp_path / "new"), dataset.source_ids)
    np.testing.assert_allclose(rows[1:], exported[1:], rtol=1e-5, atol=1e-5)
    assert metadata["items"] == str(small_dataset.parent / "item.json")
    assert metadata["num_items"] == str(dataset.num_items) and "dataset_sha256" not in metadata


def test_plain_texts_encode_in_order_with_positions_as_ids(small_dataset, tiny_embedder_folder, exported, tmp_path):
    dataset = PreparedDataset.load(small_dataset)
    texts = [dataset.item_texts[3], dataset.item_texts[1]]
    assert _encode("--model", tiny_embedder_folder, "--text", texts[0], "--text", texts[1],
                   "--output", tmp_path / "t.npy", "--format-out", "npy", "--normalize") == 0
    rows = np.load(tmp_path / "t.npy", allow_pickle=False)
    expected = exported[[3, 1]] / np.linalg.norm(exported[[3, 1]], axis=1, keepdims=True)
    np.testing.assert_allclose(rows, expected, rtol=1e-5, atol=1e-5)
    assert json.loads((tmp_path / "t.npy.ids.json").read_text()) == ["1", "2"]
    meta = json.loads((tmp_path / "t.npy.meta.json").read_text())
    assert meta["items"] == "texts" and meta["normalized"] == "true" and meta["num_items"] == "2"


def test_python_encode_takes_the_sentence_transformers_keywords(small_dataset, tiny_embedder_folder, exported):
    dataset = PreparedDataset.load(small_dataset)
    texts = dataset.item_texts[1:6]
    rows = encode(tiny_embedder_folder, texts, batch_size=2, device="cpu")
    assert isinstance(rows, np.ndarray) and rows.dtype == np.float32 and rows.shape == (5, 64)
    np.testing.assert_allclose(rows, exported[1:6], rtol=1e-5, atol=1e-5)
    unit = encode(tiny_embedder_folder, texts, normalize_embeddings=True, convert_to_numpy=False)
    assert isinstance(unit, torch.Tensor)
    np.testing.assert_allclose(unit.norm(dim=1).numpy(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(unit.numpy(), rows / np.linalg.norm(rows, axis=1, keepdims=True), rtol=1e-5)
    single = encode(tiny_embedder_folder, texts[2])
    assert single.shape == (64,)
    np.testing.assert_allclose(single, rows[2], rtol=1e-5, atol=1e-5)


def test_encode_refuses_unclear_requests_before_loading_the_model(small_dataset, tmp_path):
    missing_model = tmp_path / "no_model"  # never loaded: each refusal comes first
    items = small_dataset.parent / "item.json"
    cases = [
        (["--items", items, "--format", "seqjson", "--text", "a"], "not both"),
        ([], "not both"),
        (["--items", items], "--items needs --format"),
        (["--items", items, "--format", "excel"], "unknown format 'excel'"),
        (["--text", "a", "--format_out", "csv"], "--format 'csv': unknown format"),
        (["--text", "a", "--batch_size", "0"], "--batch-size"),
    ]
    for extra, message in cases:
        with pytest.raises(InputError, match=message):
            _encode("--model", missing_model, "--output", tmp_path / "out", *extra)
    (tmp_path / "mine.npy").write_bytes(b"not a table")
    with pytest.raises(InputError, match="mine.npy"):
        _encode("--model", missing_model, "--text", "a", "--output", tmp_path / "mine.npy", "--format_out", "npy")
    assert (tmp_path / "mine.npy").read_bytes() == b"not a table"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["mine.npy"]


def test_minilm_encodes_new_items_as_export_does_from_a_recipe(small_dataset, minilm_path, tmp_path):
    """The bundled MiniLM (an encoder: the reference path), with the options given as a --config recipe."""
    from reaemb_trl.embedder import LatentReasoningEmbedder

    dataset = PreparedDataset.load(small_dataset)
    folder = tmp_path / "minilm"
    embedder = LatentReasoningEmbedder.from_backbone(minilm_path, LoadingOptions(max_length=64))
    embedder.save_pretrained(folder)
    export_item_table(embedder, dataset, tmp_path / "export.npy", ExportOptions(table_format="npy",
                                                                                show_progress=False))
    recipe = tmp_path / "encode.yaml"
    recipe.write_text(f"model: {folder}\nitems: {small_dataset.parent / 'item.json'}\nformat: seqjson\n"
                      f"format_out: parquet\noutput: {tmp_path / 'new'}\nshow_progress: false\n")
    assert encode_main(["--config", str(recipe)]) == 0
    encoded = read_item_table(tmp_path / "new.parquet", dataset.source_ids)[0]
    exported = read_item_table(tmp_path / "export.npy", dataset.source_ids)[0]
    np.testing.assert_allclose(encoded, exported, rtol=1e-5, atol=1e-5)
    assert np.abs(encoded[1:]).sum(axis=1).min() > 0
