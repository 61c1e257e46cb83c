import json
import textwrap

import pytest
import torch
import yaml

from reaemb_trl.crrl import CooccurrenceRewardModel, CRRLConfig, EmbeddingGRPOTrainer, item_dataset, load_policy
from reaemb_trl.crrl.cli import main
from reaemb_trl.crrl.policy import policy_logprobs
from reaemb_trl.embedder import LatentReasoningEmbedder
from reaemb_trl.embedder.loading import LoadingOptions
from reaemb_trl.errors import InputError
from reaemb_trl.rewards import get_reward
from reaemb_trl.testing import save_tiny_decoder


@pytest.fixture(scope="module")
def lrcl_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("crrl")
    backbone = save_tiny_decoder(root / "backbone")
    LatentReasoningEmbedder.from_backbone(str(backbone), LoadingOptions(max_length=40)).save_pretrained(root / "lrcl")
    return root / "lrcl"


@pytest.fixture(scope="module")
def reward_model(prepared_sample):
    return CooccurrenceRewardModel(prepared_sample, num_candidates=10)


def make_trainer(lrcl_folder, reward_model, tmp_path, num_items=16, **overrides):
    settings = dict(output_dir=str(tmp_path / "out"), num_generations=4, per_device_train_batch_size=16, max_steps=1,
                    logging_steps=1, save_strategy="no", report_to="none", warmup_steps=0, learning_rate=1e-2,
                    use_cpu=True, lrcl_model_path=str(lrcl_folder), seed=0)
    settings.update(overrides)
    args = CRRLConfig(**settings)
    train_items, _ = reward_model.split_items(0)
    embedder = load_policy(args)
    return EmbeddingGRPOTrainer(embedder, args, reward_model,
                                item_dataset(train_items[:num_items], reward_model.item_texts))


def logged(trainer, key):
    return [entry[key] for entry in trainer.state.log_history if key in entry]


def test_one_step_changes_only_the_thought_module(lrcl_folder, reward_model, tmp_path):
    trainer = make_trainer(lrcl_folder, reward_model, tmp_path)
    embedder = trainer.model
    before = {name: tensor.clone() for name, tensor in embedder.state_dict().items()}
    trainer.train()
    changed = {name for name, tensor in embedder.state_dict().items() if not torch.equal(before[name], tensor)}
    assert changed == {"thought_module.q_proj.weight", "thought_module.k_proj.weight", "thought_module.v_proj.weight"}
    assert {name for name, p in embedder.named_parameters() if p.requires_grad} == {
        "thought_module.q_proj.weight", "thought_module.k_proj.weight", "thought_module.v_proj.weight"}
    assert logged(trainer, "rewards/cooc_ndcg/mean")[0] > 0


def test_second_iteration_sees_a_ratio_and_clipping_engages(lrcl_folder, reward_model, tmp_path):
    trainer = make_trainer(lrcl_folder, reward_model, tmp_path, num_iterations=2, max_steps=2, epsilon=1e-3,
                           epsilon_high=1e-3, learning_rate=5e-2)
    trainer.train()
    first, second = logged(trainer, "log_ratio/abs_max")
    assert first < 1e-5  # on-policy: the recomputed mean matches the sampling mean
    assert second > 1e-3
    clipped = logged(trainer, "clip_ratio/region_mean")
    assert clipped[0] == 0.0 and clipped[1] > 0.0


def test_token_likelihood_training_recomputes_the_sampling_log_probs(lrcl_folder, reward_model, tmp_path):
    # The loss encodes each distinct prompt once and hands its cache to the (shuffled) samples: at the first
    # iteration the recomputed log-probs must equal the ones stored at sampling time.
    trainer = make_trainer(lrcl_folder, reward_model, tmp_path, logprob="token_likelihood", num_iterations=2,
                           max_steps=2, learning_rate=5e-2)
    before = trainer.model.thought_module.v_proj.weight.detach().clone()
    trainer.train()
    first, second = logged(trainer, "log_ratio/abs_max")
    assert first < 1e-5 and second > 1e-4
    assert not torch.equal(before, trainer.model.thought_module.v_proj.weight)


def test_token_likelihood_matches_a_full_prompt_computation(lrcl_folder, reward_model):
    embedder = LatentReasoningEmbedder.from_pretrained(lrcl_folder)
    texts = [reward_model.item_texts[i] for i in (1, 2, 3)]
    batch = embedder.tokenize(texts)
    group_size, sigma = 2, 0.1
    with torch.no_grad():
        prefix = embedder.encode_prefix(**batch)
        mean = embedder.thought_mean(prefix)
        noise = torch.randn(3 * group_size, *mean.shape[1:], generator=torch.Generator().manual_seed(0))
        thoughts = mean.repeat_interleave(group_size, 0) + sigma * noise
        fast = policy_logprobs("token_likelihood", embedder, prefix, mean, thoughts, noise, sigma, group_size)

        # Reference: the backbone on each whole, unpadded prompt with the thought as the input embedding at the
        # thought position; log-probs of every token after it.
        lm = embedder.backbone_model
        thought_id = embedder.thought_token_ids[0]
        expected = []
        for row in range(3 * group_size):
            ids = batch["input_ids"][row // group_size][batch["attention_mask"][row // group_size].bool()]
            position = int((ids == thought_id).nonzero())
            embeds = lm.get_input_embeddings()(ids[None]).clone()
            embeds[0, position] = thoughts[row, 0]
            logprobs = lm(inputs_embeds=embeds).logits[0].log_softmax(-1)
            expected.append(logprobs[position:-1].gather(1, ids[position + 1:, None]).squeeze(1))
    torch.testing.assert_close(fast, torch.stack(expected), rtol=1e-4, atol=1e-4)


def test_user_reward_from_a_dotted_path_changes_training(lrcl_folder, reward_model, tmp_path, monkeypatch):
    (tmp_path / "crrl_user_rewards.py").write_text(textwrap.dedent("""
        def last_candidate(scores, positive_weights, **kwargs):
            return scores[:, -1]
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    weights = {}
    for reward in ("cooc_ndcg", "crrl_user_rewards:last_candidate"):
        trainer = make_trainer(lrcl_folder, reward_model, tmp_path / reward.replace(":", "_"), rewards=[reward],
                               max_steps=2)
        trainer.train()
        weights[reward] = trainer.model.thought_module.q_proj.weight.detach().clone()
        assert logged(trainer, f"rewards/{reward}/mean")
    assert not torch.allclose(weights["cooc_ndcg"], weights["crrl_user_rewards:last_candidate"])


def test_bad_input(lrcl_folder, reward_model, tmp_path):
    with pytest.raises(InputError, match="num_generations must be >= 2"):
        CRRLConfig(output_dir=str(tmp_path), num_generations=1)
    with pytest.raises(InputError, match="built on backbone"):
        load_policy(CRRLConfig(output_dir=str(tmp_path), lrcl_model_path=str(lrcl_folder),
                               backbone="Qwen/Qwen2.5-0.5B"))
    with pytest.raises(InputError, match="not a LatentReasoningEmbedder folder"):
        load_policy(CRRLConfig(output_dir=str(tmp_path), lrcl_model_path=str(tmp_path)))
    with pytest.raises(InputError, match="divisible by num_generations"):
        make_trainer(lrcl_folder, reward_model, tmp_path, per_device_train_batch_size=6)
    with pytest.raises(InputError, match="unknown reward 'nope'"):
        make_trainer(lrcl_folder, reward_model, tmp_path, rewards=["nope"])


def test_cli_writes_an_embedder_folder_and_resumes(lrcl_folder, prepared_sample, tmp_path):
    recipe = tmp_path / "crrl.yaml"
    output = tmp_path / "crrl_out"
    recipe.write_text(yaml.safe_dump({
        "lrcl_model_path": str(lrcl_folder), "dataset_dir": str(prepared_sample), "output_dir": str(output),
        "backbone": json.loads((lrcl_folder / "config.json").read_text())["backbone_name_or_path"],
        "num_generations": 4, "per_device_train_batch_size": 16, "max_steps": 2, "eval_items": 20, "sigma": 1.0,
        "rewards": ["cooc_ndcg", "cooc_mrr"], "reward_weights": [1.0, 0.5], "save_steps": 1, "use_cpu": True,
        "report_to": "none", "warmup_steps": 0,
    }))
    assert main(["--config", str(recipe), "--learning_rate", "0.01"]) == 0
    metrics = json.loads((output / "crrl_metrics.json").read_text())
    assert metrics["heldout_items"] == 20 and "eval_cooc_ndcg" in metrics["end"]
    # The start is reported against the reward's random floor and ceiling (0.301 and 0.5 with 10 candidates), and
    # the noise-free reward is also measured on as many training items as held-out ones.
    assert metrics["reward_floor"] == pytest.approx(0.3008, abs=0.01) and metrics["reward_ceiling"] == 0.5
    floor, start = metrics["reward_floor"], metrics["start"]["eval_start_cooc_ndcg"]
    assert metrics["start_above_floor"] == pytest.approx((start - floor) / (0.5 - floor))
    assert 0 < metrics["end"]["eval_train_items_cooc_ndcg"] <= 0.5
    curves = output / "crrl_curves.png"
    assert curves.stat().st_size > 10_000 and curves.read_bytes()[:4] == b"\x89PNG"
    crrl_config = json.loads((output / "crrl_config.json").read_text())
    assert crrl_config["learning_rate"] == 0.01
    assert json.loads((output / "config.json").read_text())["similarity"] == crrl_config["similarity"]
    # The trainer's arguments are kept as JSON, never as transformers' pickled training_args.bin.
    for folder in (output, output / "checkpoint-1"):
        assert not (folder / "training_args.bin").exists()
        assert json.loads((folder / "training_args.json").read_text())["learning_rate"] == 0.01
    # The folder's model card is this model's, not TRL's text-generation card.
    card = (output / "README.md").read_text()
    assert "library_name: reaemb_trl" in card and "# Item embedder (CRRL)" in card and "eval_cooc_ndcg" in card
    assert "text-generation" not in card and "from_pretrained(" in card and "learning_rate: 0.01" in card
    trained = LatentReasoningEmbedder.from_pretrained(output)
    start = LatentReasoningEmbedder.from_pretrained(lrcl_folder)
    assert not torch.equal(trained.thought_module.q_proj.weight, start.thought_module.q_proj.weight)

    # No artifact is a pickle: optimizer, schedule and RNG states are safetensors + JSON.
    assert not [p for p in output.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
    assert {"optimizer.json", "optimizer.safetensors", "scheduler.json", "rng_state.safetensors",
            "generation_state_0.json"} <= {p.name for p in (output / "checkpoint-1").iterdir()}

    # Resuming from the step-1 checkpoint, inside the 2-iteration cycle of the first generation (thought module,
    # optimizer, RNG, thought noise, buffered samples), finishes the run where the straight run ended.
    resumed_output = tmp_path / "resumed"
    assert main(["--config", str(recipe), "--output_dir", str(resumed_output),
                 "--resume_from_checkpoint", str(output / "checkpoint-1"), "--learning_rate", "0.01"]) == 0
    state = json.loads((resumed_output / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    resumed = LatentReasoningEmbedder.from_pretrained(resumed_output)
    for name, value in trained.thought_module.state_dict().items():
        torch.testing.assert_close(resumed.thought_module.state_dict()[name], value, rtol=1e-5, atol=1e-6)


def test_prefix_cache_leaves_training_unchanged(lrcl_folder, reward_model, tmp_path):
    # 4 items per step over 8 items: from step 3 on, items and candidates come back and are served from the cache.
    runs = {}
    for size in (0, 512):
        trainer = make_trainer(lrcl_folder, reward_model, tmp_path / str(size), num_items=8, max_steps=4,
                               prefix_cache_size=size, num_iterations=1)
        trainer.train()
        runs[size] = trainer
    cached, plain = runs[512], runs[0]
    assert plain.prefix_cache is None and logged(plain, "prefix_cache/hit_rate") == []
    assert logged(cached, "prefix_cache/hit_rate")[-1] > 0.2
    assert logged(cached, "reward") == pytest.approx(logged(plain, "reward"), abs=1e-6)
    for name, value in plain.model.thought_module.state_dict().items():
        assert torch.allclose(cached.model.thought_module.state_dict()[name], value, atol=1e-5), name
    assert not torch.equal(cached.model.thought_module.v_proj.weight,
                           LatentReasoningEmbedder.from_pretrained(lrcl_folder).thought_module.v_proj.weight)


def test_noise_free_reward_is_the_policy_mean_reward(lrcl_folder, reward_model, tmp_path):
    # 4 items x G 4 in one step: sample 0 of each group is the mean thought, so its logged reward is the noise-free
    # evaluation of those 4 items (same epoch-0 candidates), while the sampled mean differs.
    trainer = make_trainer(lrcl_folder, reward_model, tmp_path, num_items=4, sigma=0.5)
    items = trainer.train_dataset["item_id"]
    encode = lambda texts: trainer.model.encode(texts, show_progress=False)  # noqa: E731
    expected = reward_model.evaluate(items, encode, get_reward("cooc_ndcg"))
    trainer.train()
    assert logged(trainer, "reward_noise_free")[0] == pytest.approx(expected, abs=1e-6)
    assert logged(trainer, "reward")[0] != pytest.approx(expected, abs=1e-6)


def test_resume_latest_or_true_finds_the_newest_checkpoint(tmp_path):
    from reaemb_trl.errors import InputError
    from reaemb_trl.training_state import resolve_resume

    with pytest.raises(InputError, match="no checkpoint-N folder"):
        resolve_resume("latest", tmp_path)
    for step in (5, 10):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-10" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-5" / "trainer_state.json").write_text("{}")
    for value in ("latest", "true", "True"):
        assert resolve_resume(value, tmp_path) == str(tmp_path / "checkpoint-10")
    assert resolve_resume(str(tmp_path / "checkpoint-5"), tmp_path) == str(tmp_path / "checkpoint-5")
    assert resolve_resume(None, tmp_path) is None


@pytest.mark.parametrize(("key", "value", "meaning"), [
    ("use_vllm", True, "vLLM"), ("temperature", 0.7, "text sampling"), ("log_completions", True, "completion logging"),
    ("sync_ref_model", True, "reference-model sync")])
def test_grpo_keys_that_mean_nothing_here_are_refused_by_name(tmp_path, key, value, meaning):
    from reaemb_trl.errors import InputError

    with pytest.raises(InputError, match=rf"{key} \({meaning}\) mean nothing here"):
        CRRLConfig(output_dir=str(tmp_path), **{key: value})
    CRRLConfig(output_dir=str(tmp_path), logging_steps=3, report_to="none")  # the keys CRRL uses still work


def test_tensorboard_events_of_every_evaluation_land_under_output_dir(lrcl_folder, prepared_sample, tmp_path,
                                                                      monkeypatch):
    # The evaluation before training logs before TensorBoard's callback picks its folder at train begin; without a
    # folder given it would write to ./runs of the working directory.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from reaemb_trl.crrl import run

    monkeypatch.chdir(tmp_path)
    output = tmp_path / "out"
    run(CRRLConfig(output_dir=str(output), lrcl_model_path=str(lrcl_folder), dataset_dir=str(prepared_sample),
                   num_generations=4, per_device_train_batch_size=16, max_steps=2, eval_items=8, logging_steps=1,
                   save_strategy="no", report_to="tensorboard", warmup_steps=0, use_cpu=True, seed=0))
    assert not (tmp_path / "runs").exists()
    tags = set()
    for events in output.rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    assert {"eval/start_cooc_ndcg", "eval/start_train_items_cooc_ndcg", "train/reward", "eval/cooc_ndcg",
            "train/reward_floor"} <= tags, tags
