"""The supervised control of CRRL (`lrcl_cooc_sft`): on real MiniLM embeddings it lowers its loss and raises the
noise-free reward, writes an embedder folder in which only the thought module changed, and visits as many items per
step as CRRL does."""

import json

import pytest
import torch
from conftest import prepared_sample_subset
from safetensors.torch import load_file

from reaemb_trl.crrl import CooccurrenceRewardModel, CRRLConfig, build_trainer, load_policy, run_cooc_sft
from reaemb_trl.crrl.cooc_sft import CoocSFT, items_per_step
from reaemb_trl.crrl.run import build_reward_model
from reaemb_trl.embedder import LatentReasoningEmbedder
from reaemb_trl.embedder.loading import LoadingOptions
from reaemb_trl.errors import InputError


@pytest.fixture(scope="module")
def office30(tmp_path_factory):
    """The first 30 users of the bundled sample: 235 items, 185 with a co-occurring item."""
    return prepared_sample_subset(tmp_path_factory.mktemp("office30"), 30)


def _args(lrcl, data, output, **overrides) -> CRRLConfig:
    settings = dict(output_dir=str(output), lrcl_model_path=str(lrcl), dataset_dir=str(data), num_generations=4,
                    per_device_train_batch_size=32, num_iterations=2, max_steps=12, learning_rate=1e-3,
                    warmup_steps=0, lr_scheduler_type="constant", refresh_every=100, eval_items=32,
                    save_strategy="no", report_to="none", use_cpu=True, seed=0, disable_tqdm=True)
    return CRRLConfig(**{**settings, **overrides})


def test_sft_lowers_its_loss_raises_the_reward_and_trains_the_thought_module_only(office30, minilm_path, tmp_path):
    lrcl = tmp_path / "lrcl"
    LatentReasoningEmbedder.from_backbone(minilm_path, LoadingOptions(max_length=24, use_peft=True,
                                                                      lora_target_modules=["query",
                                                                                           "value"])).save_pretrained(lrcl)
    metrics = run_cooc_sft(_args(lrcl, office30, tmp_path / "sft"))

    # CRRL's item visits: 32 samples / G 4 = 8 items per step, each batch for num_iterations = 2 steps
    assert metrics["items_per_step"] == 8 and metrics["item_visits"] == 12 * 8
    assert (metrics["train_items"], metrics["heldout_items"]) == (153, 32)
    # The second step on the same items has the lower loss, every time (measured: 2.09 -> 1.28, ..., 2.70 -> 2.56).
    losses = [entry["loss"] for entry in metrics["log_history"]]
    assert len(losses) == 12 and all(second < first for first, second in zip(losses[::2], losses[1::2])), losses
    start, end = metrics["start"], metrics["end"]
    # Measured: held-out loss 2.302 -> 2.230; on as many training items loss 2.739 -> 2.374, cooc_ndcg 0.326 -> 0.342.
    assert end["eval_loss"] < start["eval_start_loss"] - 0.03
    assert end["eval_train_items_loss"] < start["eval_start_train_items_loss"] - 0.2
    assert end["eval_train_items_cooc_ndcg"] > start["eval_start_train_items_cooc_ndcg"] + 0.008

    out = tmp_path / "sft"
    assert json.loads((out / "cooc_sft_metrics.json").read_text()) == metrics
    assert json.loads((out / "cooc_sft_config.json").read_text())["max_steps"] == 12
    assert "eval_train_items_cooc_ndcg" in (out / "README.md").read_text()
    # only the thought module changed: not the thought-token embeddings, not the (merged, frozen) LoRA adapter
    before, after = load_file(lrcl / "thought_module.safetensors"), load_file(out / "thought_module.safetensors")
    changed = sorted(key for key in before if not torch.equal(before[key], after[key]))
    assert changed and all(key.startswith("thought_module.") for key in changed)
    adapter_before = load_file(lrcl / "adapter" / "adapter_model.safetensors")
    adapter_after = load_file(out / "adapter" / "adapter_model.safetensors")
    assert adapter_before.keys() == adapter_after.keys()
    assert all(torch.equal(adapter_before[key], adapter_after[key]) for key in adapter_before)

    with pytest.raises(InputError, match="not empty"):
        run_cooc_sft(_args(lrcl, office30, out))


def test_item_visits_are_crrls_on_the_fast_path(office30, tiny_embedder_folder, tmp_path, monkeypatch):
    """CRRL and the SFT on the same recipe (a tiny decoder: the fast path) send the reward model as many items per
    step, drawn from the training split; the SFT's gradient reaches the thought module only."""
    args = _args(tiny_embedder_folder, office30, tmp_path / "run", per_device_train_batch_size=8, num_generations=2,
                 max_steps=4, eval_items=8, refresh_every=1)
    scored = []
    score = CooccurrenceRewardModel.score

    def counting_score(self, item_ids, *rest, **kwargs):
        scored.append(item_ids.tolist())
        return score(self, item_ids, *rest, **kwargs)

    monkeypatch.setattr(CooccurrenceRewardModel, "score", counting_score)
    build_trainer(args).train()
    # one call per generation, each item repeated G times; a generation serves num_iterations steps
    assert all(ids == [i for i in ids[::2] for _ in range(2)] for ids in scored)
    crrl_batches = [ids[::2] for ids in scored]
    assert [len(batch) for batch in crrl_batches] == [4, 4]

    scored.clear()
    reward_model = build_reward_model(args)
    train_items, heldout_items = reward_model.split_items(args.eval_items, seed=args.seed)
    sft = CoocSFT(load_policy(args), args, reward_model, train_items)
    weights = {name: p.detach().clone() for name, p in sft.embedder.named_parameters()}
    sft.train()
    assert scored[0] == scored[1] and scored[2] == scored[3]  # one batch per num_iterations steps, like CRRL's
    assert sum(map(len, scored)) == sft.items_seen == args.num_iterations * sum(map(len, crrl_batches))
    assert sft.items_seen == args.max_steps * items_per_step(args) == 16
    assert set().union(*scored) <= set(train_items.tolist()) and not set().union(*scored) & set(heldout_items.tolist())
    changed = [name for name, p in sft.embedder.named_parameters() if not torch.equal(weights[name], p)]
    assert changed and all(name.startswith("thought_module.") for name in changed)

    with pytest.raises(InputError, match="thought module only"):
        CoocSFT(None, _args(tiny_embedder_folder, office30, tmp_path / "x", train_lora=True,
                            logprob="token_likelihood"), reward_model, train_items)
    with pytest.raises(InputError, match="for 3 train items"):
        CoocSFT(None, args, reward_model, train_items[:3])


def test_cli_runs_the_pipelines_recipe_by_hand(office30, tiny_embedder_folder, tmp_path, capsys):
    import json

    import yaml

    from reaemb_trl.cli import main

    recipe = tmp_path / "cooc_sft.yaml"
    recipe.write_text(yaml.safe_dump({
        "lrcl_model_path": str(tiny_embedder_folder), "dataset_dir": str(office30),
        "output_dir": str(tmp_path / "sft"), "per_device_train_batch_size": 8, "num_generations": 2, "max_steps": 2,
        "eval_items": 8, "use_cpu": True, "report_to": "none", "warmup_steps": 0}))
    assert main(["cooc-sft", "--config", str(recipe)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["item_visits"] == 8 and (tmp_path / "sft" / "cooc_sft_metrics.json").is_file()
    assert main(["cooc-sft", "--config", str(recipe)]) == 2  # a finished folder is kept without the overwrite flag
