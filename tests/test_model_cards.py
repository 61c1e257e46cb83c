"""Model cards are `huggingface_hub.ModelCard`s with structured metadata, the CRRL card shows its reward before and
after and only the settings that matter, and what a push uploads names the real repository and no local path."""

import json
import os
import sys
from pathlib import Path

import yaml
from huggingface_hub import ModelCard

from reaemb_trl.crrl import CRRLConfig
from reaemb_trl.embedder import LatentReasoningEmbedder
from reaemb_trl.embedder.loading import LoadingOptions
from reaemb_trl.hub import LOAD_CALL, UNPUSHED_ID, files_to_push, model_card, pushed_files
from reaemb_trl.lrcl import LRCLConfig, LRCLTrainer
from reaemb_trl.testing import save_tiny_decoder

SHA = "ab" * 32


def _settings_block(card: ModelCard) -> dict:
    return yaml.safe_load(card.text.split("```yaml\n", 1)[1].split("```", 1)[0])


def test_crrl_card_metadata_rewards_before_and_after_and_the_settings_that_matter(tmp_path):
    settings = CRRLConfig(output_dir=str(tmp_path), use_cpu=True, sigma=0.05).card_settings()
    text = model_card(stage="crrl", backbone="bundled-smollm2", settings=settings, dataset_sha256=SHA,
                      metrics={"eval_cooc_ndcg": 0.41, "eval_train_items_cooc_ndcg": 0.45, "eval_runtime": 3.2},
                      start_metrics={"eval_cooc_ndcg": 0.35, "eval_train_items_cooc_ndcg": 0.36},
                      repo_id="me/office-embedder", embedding_dim=576, similarity="cosine")
    card = ModelCard(text)
    data = card.data
    assert (data.library_name, data.pipeline_tag, data.base_model) == (
        "reaemb_trl", "feature-extraction", "HuggingFaceTB/SmolLM2-135M-Instruct")
    assert data.to_dict()["embedding_dimension"] == 576 and data.to_dict()["similarity"] == "cosine"
    assert data.to_dict()["dataset_sha256"] == SHA
    # the shipped model's results as model-index entries; the start is the model before this stage, not this one
    assert data.model_name == "me/office-embedder"
    assert {(r.metric_type, r.metric_value, r.task_type, r.dataset_revision) for r in data.eval_results} == {
        ("eval_cooc_ndcg", 0.41, "feature-extraction", SHA), ("eval_train_items_cooc_ndcg", 0.45,
                                                              "feature-extraction", SHA)}
    assert "| eval_cooc_ndcg | 0.3500 | 0.4100 |" in card.text and "eval_runtime" not in text
    assert 'LatentReasoningEmbedder.from_pretrained("me/office-embedder")' in card.text
    shown = _settings_block(card)
    assert shown["sigma"] == 0.05 and shown["num_generations"] == 8 and shown["warmup_steps"] == 0.1
    assert not {"adam_beta1", "push_to_hub", "vllm_mode", "dataset_dir", "lrcl_model_path"} & set(shown)
    assert len(shown) < 45  # CRRL's own keys and the TRL keys that shape the update, not GRPOConfig's 200


def test_push_uploads_no_local_path_and_names_the_repository(small_dataset, tmp_path):
    backbone = save_tiny_decoder(tmp_path / "backbone", hidden_size=32, num_layers=1)
    output = tmp_path / "lrcl"
    LRCLTrainer(LRCLConfig(model_name_or_path=str(backbone), dataset_dir=str(small_dataset), output_dir=str(output),
                           max_length=32, per_device_train_batch_size=4, gradient_accumulation_steps=1, max_steps=1,
                           eval_steps=0, eval_items=4, eval_batch_size=8, save_steps=1, report_to="tensorboard",
                           seed=0)).train()
    # the folder holds this machine's paths: PEFT's blank adapter card, the configs, the tracker logs
    assert str(backbone) in (output / "adapter" / "README.md").read_text()
    assert str(backbone) in (output / "config.json").read_text()
    assert list((output / "logs").rglob("events.out.tfevents.*")) and (output / "checkpoint-1").is_dir()
    local_card = ModelCard.load(output / "README.md")
    assert local_card.data.pipeline_tag == "feature-extraction" and local_card.data.base_model is None
    assert local_card.data.to_dict()["embedding_dimension"] == 32
    assert local_card.data.to_dict()["similarity"] == "dot"  # soft_clip, the default loss, trains a dot product
    assert LOAD_CALL.format(UNPUSHED_ID) in local_card.text

    names = files_to_push(output)
    assert "adapter/README.md" not in names and "adapter/adapter_model.safetensors" in names
    assert not [name for name in names if name.startswith(("logs/", "checkpoint-"))]
    pushed = pushed_files(output, "me/office-embedder")
    assert sorted(pushed) == names
    machine_paths = {str(tmp_path), str(tmp_path.resolve()), sys.prefix, os.getcwd(), str(Path.home())}
    for name in names:
        content = pushed[name] if isinstance(pushed[name], bytes) else Path(pushed[name]).read_bytes()
        for local in machine_paths:
            assert local.encode() not in content, f"{name} names {local}"
    card = ModelCard(pushed["README.md"].decode())
    assert LOAD_CALL.format("me/office-embedder") in card.text and card.data.model_name == "me/office-embedder"
    assert "- Backbone: `backbone`" in card.text  # a local backbone folder, by its name only
    assert json.loads(pushed["config.json"])["backbone_name_or_path"] == "backbone"


def test_crrl_card_shows_its_reward_before_and_after(small_dataset, tmp_path):
    from reaemb_trl.crrl import run as run_crrl

    backbone = save_tiny_decoder(tmp_path / "backbone", hidden_size=32, num_layers=1)
    LatentReasoningEmbedder.from_backbone(str(backbone),
                                          LoadingOptions(max_length=32)).save_pretrained(tmp_path / "lrcl")
    output = tmp_path / "crrl"
    metrics = run_crrl(CRRLConfig(output_dir=str(output), lrcl_model_path=str(tmp_path / "lrcl"),
                                  dataset_dir=str(small_dataset), max_steps=1, num_generations=2,
                                  per_device_train_batch_size=2, eval_items=4, save_strategy="no", report_to="none",
                                  use_cpu=True, seed=0))
    card = ModelCard.load(output / "README.md")
    start, end = metrics["start"]["eval_start_cooc_ndcg"], metrics["end"]["eval_cooc_ndcg"]
    assert f"| eval_cooc_ndcg | {start:.4f} | {end:.4f} |" in card.text
    assert ("eval_cooc_ndcg", end) in {(r.metric_type, r.metric_value) for r in card.data.eval_results}
    assert "adam_beta1" not in card.text and "sigma: 0.1" in card.text
    assert card.data.to_dict()["similarity"] == "cosine" and card.data.to_dict()["embedding_dimension"] == 32
