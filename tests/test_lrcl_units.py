"""LRCL building blocks: the losses against a direct computation, the views, the config and recipe parsing."""

import math

import numpy as np
import pytest
import torch

from reaemb_trl.data import join_attributes
from reaemb_trl.errors import InputError
from reaemb_trl.lrcl import LRCLConfig, build_loss, make_views, view_retrieval_accuracy
from reaemb_trl.lrcl.views import ViewSampler
from reaemb_trl.recipe import parse_recipe

X = torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, -0.5], [0.3, 0.2, 1.0]])
Y = torch.tensor([[0.9, 0.1, 0.4], [0.2, 0.8, -0.1], [-0.3, 0.5, 0.7]])


def _log_softmax(row):
    row = np.asarray(row, dtype=np.float64)
    top = max(row)
    return row - top - math.log(sum(math.exp(v - top) for v in row))


def _direct_soft_clip(x, y, tau):
    """The reference formula written out element by element, in float64."""
    x, y = x.double().numpy(), y.double().numpy()
    n = len(x)
    logits = np.array([[x[i] @ y[j] / tau for j in range(n)] for i in range(n)])
    sim = np.array([[(x[i] @ x[j] + y[i] @ y[j]) / (2 * tau) for j in range(n)] for i in range(n)])
    targets = np.array([np.exp(_log_softmax(sim[i])) for i in range(n)])
    rows = [-sum(targets[i, j] * _log_softmax(logits[i])[j] for j in range(n)) for i in range(n)]
    cols = [-sum(targets[i, j] * _log_softmax(logits[:, j])[i] for i in range(n)) for j in range(n)]
    return 0.5 * (sum(rows) / n + sum(cols) / n)


def _direct_infonce(x, y, tau):
    x = x.double().numpy() / np.linalg.norm(x.double().numpy(), axis=1, keepdims=True)
    y = y.double().numpy() / np.linalg.norm(y.double().numpy(), axis=1, keepdims=True)
    logits = x @ y.T / tau
    n = len(x)
    a_to_b = -sum(_log_softmax(logits[i])[i] for i in range(n)) / n
    b_to_a = -sum(_log_softmax(logits[:, i])[i] for i in range(n)) / n
    return 0.5 * (a_to_b + b_to_a)


@pytest.mark.parametrize("tau", [1.0, 0.25])
def test_soft_clip_matches_direct_computation(tau):
    loss = build_loss("soft_clip", temperature=tau)
    assert loss(X, Y).item() == pytest.approx(_direct_soft_clip(X, Y, tau), rel=1e-6)


def test_soft_clip_temperature_is_learnable_and_clamped():
    loss = build_loss("soft_clip")
    assert loss.temperature().item() == 1.0  # reference init
    assert build_loss("soft_clip").temperature.minimum == 1e-3  # reference clamp
    loss(X, Y).backward()
    assert loss.temperature.value.grad is not None and loss.temperature.value.grad.abs() > 0
    clamped = build_loss("soft_clip", min_temperature=0.2)
    with torch.no_grad():
        clamped.temperature.value.fill_(1e-6)
    assert clamped.temperature().item() == pytest.approx(0.2)
    assert clamped(X, Y).item() == pytest.approx(_direct_soft_clip(X, Y, 0.2), rel=1e-6)


@pytest.mark.parametrize("tau", [0.05, 0.5])
def test_infonce_matches_direct_computation(tau):
    loss = build_loss("infonce", temperature=tau, learnable_temperature=False)
    assert loss(X, Y).item() == pytest.approx(_direct_infonce(X, Y, tau), rel=1e-6)
    # L2-normalised: rescaling the embeddings changes nothing.
    assert loss(3 * X, 0.5 * Y).item() == pytest.approx(loss(X, Y).item(), rel=1e-6)


def test_fixed_temperature_is_saved_but_not_trained():
    loss = build_loss("infonce", temperature=0.1, learnable_temperature=False)
    assert list(loss.parameters()) == []
    assert float(loss.state_dict()["temperature.value"]) == pytest.approx(0.1)
    learnable = build_loss("infonce", temperature=0.1, learnable_temperature=True)
    assert [name for name, _ in learnable.named_parameters()] == ["temperature.value"]


def test_losses_prefer_aligned_views():
    aligned, shuffled = X.clone(), X[[1, 2, 0]]
    for name in ("soft_clip", "infonce"):
        loss = build_loss(name)
        assert loss(X, aligned).item() < loss(X, shuffled).item()


def test_unknown_loss_name():
    with pytest.raises(KeyError, match="unknown LRCL loss 'triplet'"):
        build_loss("triplet")


def test_view_retrieval_accuracy():
    assert view_retrieval_accuracy(X, X) == 1.0
    # Rows 0 and 1 swapped in view b: only item 2 finds its partner, both ways.
    assert view_retrieval_accuracy(X, X[[1, 0, 2]]) == pytest.approx(1 / 3)


ATTRIBUTES = [("title", "Pilot G2 Gel Pen"), ("brand", "Pilot"), ("categories", "Office, Pens"),
              ("description", "Smooth writing gel ink"), ("price", "9.99")]


def _pairs(text):
    return text.split("; ")


def test_views_drop_forty_percent_of_attributes_and_differ():
    original = set(_pairs(join_attributes(ATTRIBUTES)))
    for key in range(20):
        first, second = make_views(ATTRIBUTES, 0.4, np.random.default_rng(key))
        assert first != second
        for view in (first, second):
            parts = _pairs(view)
            assert len(parts) == 3  # 5 - int(0.4 * 5)
            assert set(parts) <= original and len(set(parts)) == 3


def test_views_of_two_attributes_keep_both_in_a_different_order():
    attributes = ATTRIBUTES[:2]  # int(0.4 * 2) = 0 dropped: only the order can differ
    first, second = make_views(attributes, 0.4, np.random.default_rng(3))
    assert first != second
    assert sorted(_pairs(first)) == sorted(_pairs(second)) == sorted(_pairs(join_attributes(attributes)))


def test_single_attribute_falls_back_to_word_dropout():
    attributes = [("title", "Swingline heavy duty desktop stapler with staples")]
    full = join_attributes(attributes).split()
    for key in range(10):
        first, second = make_views(attributes, 0.4, np.random.default_rng(key))
        assert first != second
        for view in (first, second):
            words = view.split()
            assert len(words) == len(full) - int(0.4 * len(full))
            positions = [full.index(word) for word in words]
            assert positions == sorted(positions)  # a subsequence: words dropped, none moved


def test_view_sampler_is_a_function_of_seed_and_key():
    items = [[], ATTRIBUTES, ATTRIBUTES[:3]]
    sampler = ViewSampler(items, 0.4, seed=7, namespace=1)
    assert sampler.pair(1, 10) == ViewSampler(items, 0.4, seed=7, namespace=1).pair(1, 10)
    draws = {sampler.pair(1, key) for key in range(10)}
    assert len(draws) > 5
    assert sampler.pair(1, 10) != ViewSampler(items, 0.4, seed=8, namespace=1).pair(1, 10)
    first, second = sampler.pairs([1, 2], [0, 1])
    assert len(first) == len(second) == 2


def test_config_defaults_are_the_reference_settings():
    config = LRCLConfig()
    assert (config.learning_rate, config.max_steps, config.max_length) == (2e-4, 2000, 1024)
    assert (config.lora_r, config.lora_alpha, config.lora_dropout) == (8, 32, 0.1)
    assert (config.view_drop_ratio, config.loss, config.learnable_temperature) == (0.4, "soft_clip", True)
    # 64 items x 2 accumulation steps x 4 GPUs = the reference's 512 items per optimizer step.
    assert config.per_device_train_batch_size * config.gradient_accumulation_steps * 4 == 512
    if not torch.cuda.is_available():
        assert config.resolved_mixed_precision() == "no"  # bf16 only where the device has it


def test_recipe_with_overrides(tmp_path):
    recipe = tmp_path / "lrcl.yaml"
    recipe.write_text("model_name_or_path: some/model\ndataset_dir: data\nmax_steps: 30\nloss: infonce\n"
                      "lora_target_modules: [query, value]\n")
    config = parse_recipe(LRCLConfig, ["--config", str(recipe), "--max_steps", "12", "--temperature", "0.1"])
    assert (config.max_steps, config.loss, config.temperature) == (12, "infonce", 0.1)
    assert config.lora_target_modules == ["query", "value"]


def test_recipe_unknown_key_is_named(tmp_path):
    recipe = tmp_path / "lrcl.yaml"
    recipe.write_text("model_name_or_path: some/model\nlerning_rate: 0.1\n")
    with pytest.raises(InputError, match="lerning_rate"):
        parse_recipe(LRCLConfig, ["--config", str(recipe)])


@pytest.mark.parametrize("override, message", [
    (["--loss", "triplet"], "unknown loss 'triplet'"),
    (["--quantization", "8bit"], "quantization='8bit'"),
    (["--view_drop_ratio", "1.5"], "view_drop_ratio"),
])
def test_bad_config_values(override, message):
    with pytest.raises(InputError, match=message):
        parse_recipe(LRCLConfig, ["--model_name_or_path", "m", *override])


def test_trainingarguments_names_and_the_deprecated_one(tmp_path):
    from reaemb_trl.lrcl import LRCLConfig

    assert LRCLConfig(bf16=True).resolved_mixed_precision() == "bf16"
    assert LRCLConfig(fp16=True).resolved_mixed_precision() == "fp16"
    assert LRCLConfig(bf16=False).resolved_mixed_precision() == "no"
    assert LRCLConfig(report_to="tensorboard,wandb").report_to == ["tensorboard", "wandb"]
    assert LRCLConfig(report_to="none").report_to == [] and LRCLConfig(report_to=["none"]).report_to == []
    with pytest.raises(InputError, match="bf16 and fp16 are both set"):
        LRCLConfig(bf16=True, fp16=True)
    with pytest.warns(FutureWarning, match="mixed_precision is deprecated"):
        old = LRCLConfig(mixed_precision="fp16")
    assert old.resolved_mixed_precision() == "fp16"
