"""Resuming CRRL from the checkpoint of a finished run trains no further step (the Trainer alone would run one)."""

import json

import torch

from reaemb_trl.crrl import CooccurrenceRewardModel, CRRLConfig, EmbeddingGRPOTrainer, item_dataset, load_policy
from reaemb_trl.embedder import LatentReasoningEmbedder
from reaemb_trl.embedder.loading import LoadingOptions
from reaemb_trl.testing import save_tiny_decoder


def test_resume_from_the_final_checkpoint_keeps_the_step_count_and_weights(prepared_sample, tmp_path):
    backbone = save_tiny_decoder(tmp_path / "backbone")
    LatentReasoningEmbedder.from_backbone(str(backbone),
                                          LoadingOptions(max_length=40)).save_pretrained(tmp_path / "lrcl")
    reward_model = CooccurrenceRewardModel(prepared_sample, num_candidates=10)
    train_items, _ = reward_model.split_items(0)

    def trainer(output):
        args = CRRLConfig(output_dir=str(output), num_generations=4, per_device_train_batch_size=16, max_steps=2,
                          save_steps=1, logging_steps=1, report_to="none", warmup_steps=0, learning_rate=1e-2,
                          use_cpu=True, lrcl_model_path=str(tmp_path / "lrcl"), seed=0)
        return EmbeddingGRPOTrainer(load_policy(args), args, reward_model,
                                    item_dataset(train_items[:8], reward_model.item_texts))

    finished = trainer(tmp_path / "run")
    finished.train()
    final = tmp_path / "run" / "checkpoint-2"
    assert json.loads((final / "trainer_state.json").read_text())["global_step"] == 2

    resumed = trainer(tmp_path / "resumed")
    start = {name: value.clone() for name, value in resumed.model.thought_module.state_dict().items()}
    resumed.train(resume_from_checkpoint=str(final))
    assert resumed.state.global_step == 2
    weights = resumed.model.thought_module.state_dict()
    assert any(not torch.equal(start[name], weights[name]) for name in weights)  # the checkpoint's were loaded
    for name, value in finished.model.thought_module.state_dict().items():
        torch.testing.assert_close(weights[name], value)
