"""`reaemb-trl export`: the item table file, its metadata, PCA, and refusals."""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors import safe_open

from reaemb_trl.cli import main as cli_main
from reaemb_trl.data import PreparedDataset, load_embedding_table, prepare_dataset
from reaemb_trl.embedder import LatentReasoningEmbedder
from reaemb_trl.embedder.loading import LoadingOptions
from reaemb_trl.errors import InputError
from reaemb_trl.export import ExportOptions, export_item_table, export_item_tables, pca_path
from reaemb_trl.testing import save_tiny_decoder


@pytest.fixture(scope="module")
def model_dir(tiny_embedder_folder):
    return tiny_embedder_folder


def test_cli_export_writes_the_table_and_pca(small_dataset, model_dir, tmp_path):
    dataset = PreparedDataset.load(small_dataset)
    output = tmp_path / "items.safetensors"
    code = cli_main(["export", "--model", str(model_dir), "--data", str(small_dataset), "--output", str(output),
                     "--pca", "8", "--batch-size", "16", "--no-progress"])
    assert code == 0
    table, metadata = load_embedding_table(output, num_items=dataset.num_items)
    assert table.shape == (dataset.num_items + 1, 64)
    assert not table[0].any() and np.abs(table[1:]).min(axis=1).max() > 0
    assert metadata == {"model": str(model_dir), "execution_path": "fast", "pooling": "mean", "dim": "64",
                        "num_items": str(dataset.num_items), "dataset_sha256": dataset.sha256}
    expected = LatentReasoningEmbedder.from_pretrained(model_dir).encode(dataset.item_texts[1:], show_progress=False)
    np.testing.assert_allclose(table[1:], expected.numpy(), rtol=1e-5, atol=1e-6)

    reduced_file = pca_path(output, 8)
    assert reduced_file.name == "items.pca8.safetensors"
    reduced, pca_metadata = load_embedding_table(reduced_file, num_items=dataset.num_items)
    assert reduced.shape == (dataset.num_items + 1, 8) and not reduced[0].any()
    assert pca_metadata["dim"] == "8" and pca_metadata["pca_from_dim"] == "64"
    with safe_open(str(reduced_file), framework="numpy") as handle:
        components = handle.get_tensor("pca_components")
        mean = handle.get_tensor("pca_mean")
        variance = handle.get_tensor("pca_explained_variance")
    assert components.shape == (8, 64) and mean.shape == (64,) and np.all(np.diff(variance) <= 0)
    np.testing.assert_allclose((table[1:] - mean) @ components.T, reduced[1:], rtol=1e-3, atol=1e-4)


def test_export_of_a_folder_saved_without_thought(small_dataset, tmp_path):
    backbone = save_tiny_decoder(tmp_path / "backbone")
    embedder = LatentReasoningEmbedder.from_backbone(backbone, LoadingOptions(use_thought=False, max_length=64))
    with torch.no_grad():
        embedder.thought_module.v_proj.weight.mul_(3.0)  # the thought would change every embedding
    embedder.save_pretrained(tmp_path / "no_thought")
    output = tmp_path / "items.safetensors"
    assert cli_main(["export", "--model", str(tmp_path / "no_thought"), "--data", str(small_dataset),
                     "--output", str(output), "--no-progress"]) == 0
    table, _ = load_embedding_table(output)
    texts = PreparedDataset.load(small_dataset).item_texts[1:]
    reloaded = LatentReasoningEmbedder.from_pretrained(tmp_path / "no_thought")
    without = reloaded.encode(texts, show_progress=False, use_thought=False).numpy()
    np.testing.assert_allclose(table[1:], without, rtol=1e-5, atol=1e-6)
    with_thought = reloaded.encode(texts, show_progress=False, use_thought=True).numpy()
    assert np.abs(with_thought - without).max() > 1e-3


def test_reference_path_export_matches_fast(small_dataset, model_dir, tmp_path):
    dataset = PreparedDataset.load(small_dataset)
    embedder = LatentReasoningEmbedder.from_pretrained(model_dir)
    fast_file, = export_item_table(embedder, dataset, tmp_path / "fast.safetensors", ExportOptions(show_progress=False))
    reference_file, = export_item_table(embedder, dataset, tmp_path / "ref.safetensors",
                                        ExportOptions(execution_path="reference", show_progress=False))
    fast, _ = load_embedding_table(fast_file)
    reference, metadata = load_embedding_table(reference_file)
    assert metadata["execution_path"] == "reference"
    assert np.abs(fast - reference).max() / np.abs(reference).max() < 1e-5


def test_export_refusals(small_dataset, model_dir, tmp_path, capsys):
    dataset = PreparedDataset.load(small_dataset)
    embedder = LatentReasoningEmbedder.from_pretrained(model_dir)
    with pytest.raises(InputError, match=f"has {dataset.num_items} items but the export was asked for 5"):
        export_item_table(embedder, dataset, tmp_path / "x.safetensors", ExportOptions(num_items=5))
    with pytest.raises(InputError, match="--pca 1000"):
        export_item_table(embedder, dataset, tmp_path / "x.safetensors", ExportOptions(pca=1000))
    args = ["export", "--model", str(model_dir), "--data", str(small_dataset), "--output", str(tmp_path / "y")]
    assert cli_main([*args, "--num-items", str(dataset.num_items + 1), "--no-progress"]) == 2
    assert "export was asked for" in capsys.readouterr().err
    (tmp_path / "empty_model").mkdir()
    assert cli_main(["export", "--model", str(tmp_path / "empty_model"), "--data", str(small_dataset),
                     "--output", str(tmp_path / "z")]) == 2
    assert "missing config.json" in capsys.readouterr().err
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "a_file").write_text("")
    for output, message in ((tmp_path / "a_folder", "the output path is a folder"),
                            (tmp_path / "a_file" / "t.safetensors", "a_file is a file")):
        assert cli_main(["export", "--model", str(model_dir), "--data", str(small_dataset), "--output",
                         str(output)]) == 2
        assert message in capsys.readouterr().err
    assert not list(tmp_path.glob("*.safetensors")) and not (tmp_path / "y").exists()


def test_items_without_text_are_refused(tmp_path, model_dir):
    (tmp_path / "inter.json").write_text(json.dumps({"u1": [1, 2, 3], "u2": [2, 3, 1]}))
    with pytest.warns(UserWarning, match="no item file"):
        folder = prepare_dataset("seqjson", interactions=tmp_path / "inter.json", output=tmp_path / "prepared",
                                 show_progress=False)
    with pytest.raises(InputError, match="3 items have no text"):
        export_item_table(LatentReasoningEmbedder.from_pretrained(model_dir), PreparedDataset.load(folder),
                          tmp_path / "t.safetensors")


def test_folders_sharing_pass1_are_exported_from_one_pass(small_dataset, model_dir, tmp_path, monkeypatch):
    """An LRCL folder and a CRRL folder trained from it (same backbone, new thought module) give, in one run, the
    tables separate exports give, with pass 1 run once per batch; a folder with other backbone weights is encoded
    on its own."""
    dataset = PreparedDataset.load(small_dataset)
    crrl_like = LatentReasoningEmbedder.from_pretrained(model_dir)
    with torch.no_grad():
        crrl_like.thought_module.v_proj.weight.mul_(2.0)  # CRRL changes only the thought module
    crrl_like.save_pretrained(tmp_path / "crrl")
    other = LatentReasoningEmbedder.from_pretrained(model_dir)
    with torch.no_grad():
        next(p for n, p in other.backbone.named_parameters() if "lora_B" in n).add_(0.5)
    other.save_pretrained(tmp_path / "other")
    folders = [model_dir, tmp_path / "crrl", tmp_path / "other"]
    embedders = [LatentReasoningEmbedder.from_pretrained(folder) for folder in folders]
    texts = dataset.item_texts[1:]
    expected = [e.encode(texts, batch_size=16, show_progress=False).numpy() for e in embedders]
    assert np.abs(expected[0] - expected[1]).max() > 1e-3 and np.abs(expected[0] - expected[2]).max() > 1e-3

    passes = []
    original = LatentReasoningEmbedder.encode_prefix
    monkeypatch.setattr(LatentReasoningEmbedder, "encode_prefix",
                        lambda self, *a, **k: passes.append(id(self)) or original(self, *a, **k))
    outputs = [tmp_path / f"{name}.safetensors" for name in ("lrcl", "crrl", "other")]
    argv = ["export", "--data", str(small_dataset), "--batch-size", "16", "--no-progress"]
    for folder, output in zip(folders, outputs):
        argv += ["--model", str(folder), "--output", str(output)]
    assert cli_main(argv) == 0
    for output, table in zip(outputs, expected):
        np.testing.assert_allclose(load_embedding_table(output)[0][1:], table, rtol=1e-5, atol=1e-6)
    batches = -(-dataset.num_items // 16)
    assert len(passes) == 2 * batches and len(set(passes)) == 2  # the LRCL folder's passes serve the CRRL folder

    assert cli_main(["export", "--data", str(small_dataset), "--model", str(model_dir), "--output", "a",
                     "--output", "b"]) == 2


def test_export_in_blocks_gives_the_one_block_tables(small_dataset, model_dir, tmp_path, monkeypatch):
    """Blocks bound an export's memory and change nothing else: a block size that splits the catalogue unevenly
    gives the tables of one block, for a pair sharing pass 1, in a format without the padding row too."""
    import reaemb_trl.export.export as export_module

    encoded = []
    original = export_module.encode_checked_group
    monkeypatch.setattr(export_module, "encode_checked_group",
                        lambda group, texts, *a: encoded.append(len(texts)) or original(group, texts, *a))
    dataset = PreparedDataset.load(small_dataset)
    crrl_like = LatentReasoningEmbedder.from_pretrained(model_dir)
    with torch.no_grad():
        crrl_like.thought_module.v_proj.weight.mul_(2.0)
    embedders = [LatentReasoningEmbedder.from_pretrained(model_dir), crrl_like]
    block_size = 10
    assert dataset.num_items % block_size and dataset.num_items > 3 * block_size
    for table_format in ("safetensors", "npy"):
        whole = export_item_tables(embedders, dataset, [tmp_path / "whole_a", tmp_path / "whole_b"],
                                   ExportOptions(batch_size=4, show_progress=False, table_format=table_format))
        assert encoded == [dataset.num_items]
        encoded.clear()
        blocks = export_item_tables(embedders, dataset, [tmp_path / "blocks_a", tmp_path / "blocks_b"],
                                    ExportOptions(batch_size=4, show_progress=False, table_format=table_format,
                                                  block_size=block_size))
        assert encoded == [min(block_size, dataset.num_items - start)
                           for start in range(0, dataset.num_items, block_size)]  # never more than one block
        encoded.clear()
        for one, split in zip(whole, blocks):
            read = load_embedding_table if table_format == "safetensors" else lambda path: (np.load(path), None)
            np.testing.assert_allclose(read(split)[0], read(one)[0], rtol=1e-5, atol=1e-6)


def test_a_damaged_folder_or_textless_dataset_is_refused_clearly(small_dataset, model_dir, tmp_path, capsys,
                                                                 monkeypatch):
    damaged = tmp_path / "damaged"
    shutil.copytree(model_dir, damaged)
    weights = damaged / "thought_module.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated mid-file
    output = tmp_path / "t.safetensors"
    argv = ["export", "--model", str(damaged), "--data", str(small_dataset), "--output", str(output), "--no-progress"]
    assert cli_main(argv) == 2
    assert "thought_module.safetensors: not a readable safetensors file" in capsys.readouterr().err
    assert not output.exists() and not list(tmp_path.glob(".*tmp*"))

    # items without text are refused before any model is loaded
    (tmp_path / "inter.json").write_text(json.dumps({"u1": [1, 2, 3], "u2": [2, 3, 1]}))
    with pytest.warns(UserWarning, match="no item file"):
        textless = prepare_dataset("seqjson", interactions=tmp_path / "inter.json", output=tmp_path / "textless",
                                   show_progress=False)
    loads = []
    monkeypatch.setattr(LatentReasoningEmbedder, "from_pretrained", classmethod(lambda cls, *a, **k: loads.append(a)))
    argv = ["export", "--model", str(model_dir), "--data", str(textless), "--output", str(output)]
    assert cli_main(argv) == 2
    assert "3 items have no text" in capsys.readouterr().err and loads == []
