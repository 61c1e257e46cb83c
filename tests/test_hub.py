"""Sharing: an embedder folder loads from a Hub id out of the Hub cache (offline, by revision), and the model card
names what a user needs."""

import shutil

import pytest
import torch

from reaemb_trl.embedder import LatentReasoningEmbedder
from reaemb_trl.embedder.loading import LoadingOptions
from reaemb_trl.errors import InputError
from reaemb_trl.hub import model_card
from reaemb_trl.testing import save_tiny_decoder


def _cache_snapshot(cache, repo_id: str, revision: str, commit: str, folder):
    """The Hub cache layout snapshot_download reads offline: refs/REVISION -> snapshots/COMMIT/<files>."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / revision).write_text(commit)


def test_a_hub_id_loads_from_the_cache_by_revision(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    backbone = save_tiny_decoder(tmp_path / "backbone", arch="llama")
    texts = ["title is Pilot G2 Gel Pen", "title is Swingline Stapler"]
    first = LatentReasoningEmbedder.from_backbone(backbone, LoadingOptions(max_length=48, seed=1))
    first.save_pretrained(tmp_path / "v1")
    second = LatentReasoningEmbedder.from_backbone(backbone, LoadingOptions(max_length=48, seed=2))
    second.save_pretrained(tmp_path / "v2")
    cache = tmp_path / "hub"
    _cache_snapshot(cache, "someone/item-embedder", "main", "a" * 40, tmp_path / "v2")
    _cache_snapshot(cache, "someone/item-embedder", "v1", "b" * 40, tmp_path / "v1")

    latest = LatentReasoningEmbedder.from_pretrained("someone/item-embedder", cache_dir=cache)
    older = LatentReasoningEmbedder.from_pretrained("someone/item-embedder", revision="v1", cache_dir=cache)
    expected = [LatentReasoningEmbedder.from_pretrained(tmp_path / v).encode(texts, show_progress=False)
                for v in ("v2", "v1")]
    torch.testing.assert_close(latest.encode(texts, show_progress=False), expected[0])
    torch.testing.assert_close(older.encode(texts, show_progress=False), expected[1])
    assert not torch.allclose(expected[0], expected[1])

    with pytest.raises(InputError, match="could not be fetched or found in the cache"):
        LatentReasoningEmbedder.from_pretrained("someone/missing", cache_dir=cache)
    with pytest.raises(InputError, match="embedder folder not found"):
        LatentReasoningEmbedder.from_pretrained(tmp_path / "no" / "such" / "folder")


def test_model_card_names_backbone_stage_data_metrics_and_use():
    card = model_card(stage="crrl", backbone="bundled-smollm2", settings={"sigma": 0.02, "max_steps": 20},
                      dataset_sha256="ab" * 32, metrics={"eval_cooc_ndcg": 0.354}, repo_id="me/office-embedder")
    assert card.startswith("---\nlibrary_name: reaemb_trl\n")
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card and "- crrl" in card
    assert "- Backbone: `bundled-smollm2`" in card and "ab" * 32 in card
    assert "| eval_cooc_ndcg | 0.3540 |" in card and "sigma: 0.02" in card
    assert 'LatentReasoningEmbedder.from_pretrained("me/office-embedder")' in card
    local = model_card(stage="lrcl", backbone="/models/mine", settings={}, dataset_sha256=None, metrics={})
    assert "base_model" not in local and "| (none) | |" in local


def test_a_folder_saved_with_a_relative_backbone_moves_with_it(tmp_path):
    """`relative_backbone=True`: the two folders copied elsewhere (another machine) load and embed the same."""
    backbone = save_tiny_decoder(tmp_path / "here" / "backbone", arch="qwen2")
    embedder = LatentReasoningEmbedder.from_backbone(backbone, LoadingOptions(max_length=48,
                                                                              attn_implementation="eager"))
    embedder.save_pretrained(tmp_path / "here" / "embedder", relative_backbone=True)
    assert embedder.config.backbone_name_or_path == str(backbone.resolve())  # the live config is unchanged
    shutil.copytree(tmp_path / "here", tmp_path / "there")
    shutil.rmtree(tmp_path / "here")
    moved = LatentReasoningEmbedder.from_pretrained(tmp_path / "there" / "embedder")
    assert moved.config.backbone_name_or_path == "../backbone"
    assert moved.config.attn_implementation == "eager" and moved.config.trust_remote_code is False
    assert moved.backbone_model.config._attn_implementation == "eager"
    texts = ["title is Pilot G2 Gel Pen"]
    torch.testing.assert_close(moved.encode(texts, show_progress=False), embedder.encode(texts, show_progress=False))


def test_backbone_dtype_and_options_reach_transformers(tmp_path):
    from reaemb_trl.embedder.backbone import torch_dtype

    backbone = save_tiny_decoder(tmp_path / "backbone", arch="llama")
    embedder = LatentReasoningEmbedder.from_backbone(backbone, LoadingOptions(max_length=48, dtype="bfloat16"))
    assert {p.dtype for p in embedder.backbone_model.parameters()} == {torch.bfloat16}
    assert torch_dtype("float16") is torch.float16 and torch_dtype("auto") == "auto" and torch_dtype(None) is None
    with pytest.raises(InputError, match="not a torch dtype"):
        torch_dtype("float65")
