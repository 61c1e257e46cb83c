"""Issue 23 §8: each kind of extension, written here outside the package as a user would, registered through its
public registry and run end to end on a tiny model / the bundled sample:

- a reward (`register_reward`), in a short CRRL run: the logged reward is the function's own output;
- a pooling mode (`register_pooling`), through `encode`: the vectors are the weighted means its weights imply;
- a recommender (`register_recommender`: settings class + model class), through `reaemb-trl compare`: its own
  setting reaches the model, and its metrics sit in the results beside pop's, and differ from them.
"""

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from conftest import prepared_sample_subset

from reaemb_trl.cli import main as cli_main
from reaemb_trl.crrl import CRRLConfig
from reaemb_trl.crrl.run import build_trainer
from reaemb_trl.data import PreparedDataset, save_embedding_table
from reaemb_trl.downstream import RECOMMENDERS, register_recommender
from reaemb_trl.downstream.models import RecommenderConfig, SequentialRecommender
from reaemb_trl.embedder import POOLING_MODES, LatentReasoningEmbedder, register_pooling
from reaemb_trl.rewards import register_reward

# ---- a reward: the best candidate's score, shifted by its own parameter; every output is kept to compare with the log

REWARD_OUTPUTS = []


@register_reward("test_extensions_shifted_best")
def shifted_best(scores, positive_weights, offset: float = 0.0, **kwargs):
    rewards = scores.max(dim=1).values + offset
    REWARD_OUTPUTS.append(rewards.detach().clone())
    return rewards


# ---- a pooling mode: the mean plus three more times the last token, i.e. sum_t h_t + 3 h_last over (n + 3)

def mean_and_thrice_last(mask, positions, from_thought):
    columns = torch.arange(mask.shape[1], device=mask.device)
    last = (mask.long() * columns).argmax(1, keepdim=True)
    return mask.float() + 3.0 * (from_thought & (columns == last)).float()


# ---- a recommender: the user state is the decay-weighted mean of the items read so far (no layers of its own)

BUILT_WITH_DECAY = []


@dataclass
class DecayedMeanConfig(RecommenderConfig):
    number_rules = {"decay": "(0, 1]"}

    decay: float = 0.5


class DecayedMean(SequentialRecommender):
    config_class = DecayedMeanConfig

    def __init__(self, item_table, max_items: int, decay: float):
        super().__init__()
        self.item_table, self.context_length, self.decay = item_table, max_items, decay

    @classmethod
    def from_config(cls, config, settings, item_table, num_items, train_popularity):
        BUILT_WITH_DECAY.append(settings.decay)
        return cls(item_table, config.max_items, settings.decay)

    def forward(self, item_ids):
        steps = torch.arange(item_ids.shape[1], device=item_ids.device)
        lag = steps[:, None] - steps[None, :]
        weights = torch.where(lag >= 0, self.decay ** lag.clamp(min=0).float(), 0.0)  # [L, L], causal
        vectors = self.item_table(item_ids) * (item_ids != 0).unsqueeze(-1)
        return weights @ vectors / weights.sum(1, keepdim=True)


@pytest.fixture
def registered_here():
    """What a test registers in the pooling and recommender registries is removed after it: other test modules build
    their parametrized lists from those registries."""
    before = dict(POOLING_MODES), dict(RECOMMENDERS)
    yield
    for registry, saved in zip((POOLING_MODES, RECOMMENDERS), before):
        registry.clear()
        registry.update(saved)


def test_a_reward_from_outside_the_package_is_what_crrl_logs(tiny_embedder_folder, prepared_sample, tmp_path):
    name = "test_extensions_shifted_best"
    config = CRRLConfig(output_dir=str(tmp_path / "crrl"), lrcl_model_path=str(tiny_embedder_folder),
                        dataset_dir=str(prepared_sample), rewards=[name], reward_kwargs={name: {"offset": 2.0}},
                        num_generations=4, per_device_train_batch_size=8, max_steps=1, eval_items=8,
                        eval_strategy="no", logging_steps=1, save_strategy="no", report_to="none", warmup_steps=0,
                        use_cpu=True, seed=0)
    trainer = build_trainer(config)
    REWARD_OUTPUTS.clear()
    trainer.train()
    logged = [entry[f"rewards/{name}/mean"] for entry in trainer.state.log_history if f"rewards/{name}/mean" in entry]
    produced = torch.cat(REWARD_OUTPUTS)
    assert len(logged) == 1 and produced.numel() == 8  # 2 items x 4 samples, one step
    # the recipe's offset reached the function (a cosine is at most 1, so without it every reward would be <= 1)
    assert bool((produced > 1.0).all())
    assert logged[0] == pytest.approx(produced.mean().item(), rel=1e-5)


def test_a_pooling_mode_from_outside_the_package_pools_as_its_weights_say(tiny_embedder_folder, registered_here):
    register_pooling("mean_and_thrice_last", "mean plus 3 x the last token")(mean_and_thrice_last)
    embedder = LatentReasoningEmbedder.from_pretrained(tiny_embedder_folder)
    texts = ["Stapler, black", "A box of 500 paper clips for the office", "Blue pen"]
    vectors = {}
    for mode in ("mean", "last", "mean_and_thrice_last"):
        embedder.config.pooling = mode
        vectors[mode] = embedder.encode(texts, show_progress=False)
    # sum_t w_t h_t / sum_t w_t with w = 1 + 3 [t = last]: (n * mean + 3 * last) / (n + 3), n real tokens per row
    n = embedder.tokenize(texts)["attention_mask"].sum(1, keepdim=True).float()
    expected = (n * vectors["mean"] + 3 * vectors["last"]) / (n + 3)
    torch.testing.assert_close(vectors["mean_and_thrice_last"], expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(vectors["mean_and_thrice_last"], vectors["mean"], atol=1e-4)
    assert not torch.allclose(vectors["mean_and_thrice_last"], vectors["last"], atol=1e-4)


def test_a_recommender_from_outside_the_package_runs_in_compare(tmp_path, registered_here):
    register_recommender("decayed_mean", DecayedMeanConfig, DecayedMean)
    data = prepared_sample_subset(tmp_path, 100)
    num_items = PreparedDataset.load(data).num_items
    table = np.random.default_rng(0).normal(size=(num_items + 1, 16)).astype(np.float32)
    table[0] = 0
    save_embedding_table(tmp_path / "random.safetensors", table)
    BUILT_WITH_DECAY.clear()
    output = tmp_path / "compare"
    assert cli_main(["compare", "--data", str(data), "--runs", f"random={tmp_path / 'random.safetensors'}",
                     "--recommenders", "decayed_mean", "pop", "--seeds", "2", "--protocols", "sampled",
                     "--epochs", "1", "--patience", "1", "--max_items", "10", "--hidden_size", "16",
                     "--no-show-progress", "--recommender_kwargs", '{"decayed_mean": {"decay": 0.9}}',
                     "--output", str(output)]) == 0
    results = json.loads((output / "results.json").read_text())
    assert sorted((r["recommender"], r["run"], r["seed"]) for r in results["runs"]) == [
        ("decayed_mean", "random", 0), ("decayed_mean", "random", 1), ("pop", "popularity", 0)]
    assert BUILT_WITH_DECAY == [0.9, 0.9]  # its own setting, from the command line, built each seed's model
    ours = [r for r in results["runs"] if r["recommender"] == "decayed_mean"]
    assert all(r["config"]["recommender_config"] == {"decay": 0.9} and r["epochs_run"] == 1 for r in ours)
    pop = next(r for r in results["runs"] if r["recommender"] == "pop")
    assert pop["overall"]["NDCG@10"] > 0 and all(r["overall"]["NDCG@10"] > 0 for r in ours)
    assert all(r["overall"]["NDCG@10"] != pop["overall"]["NDCG@10"] for r in ours)
    assert "| decayed_mean | random |" in (output / "results.md").read_text()
