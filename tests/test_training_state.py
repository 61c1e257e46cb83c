"""Pickle-free training state: exact round trips (AdamW, 8-bit AdamW, schedule, RNG) and the Trainer mixin."""

import json
import random
import shutil
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import get_cosine_schedule_with_warmup

from reaemb_trl.errors import InputError
from reaemb_trl.training_state import (
    SafeCheckpointMixin,
    load_rng_state,
    load_state,
    load_training_state,
    save_rng_state,
    save_training_state,
)

PICKLE_SUFFIXES = (".pkl", ".bin", ".pt", ".pth")
INPUTS = torch.randn(64, 128, generator=torch.Generator().manual_seed(0))


def assert_same(expected, got, where="state"):
    """Equal values of the same types all the way down (a tuple stays a tuple, int keys stay ints)."""
    assert type(got) is type(expected), (where, type(expected), type(got))
    if isinstance(expected, torch.Tensor):
        assert got.dtype == expected.dtype and torch.equal(got, expected), where
    elif isinstance(expected, np.ndarray):
        assert got.dtype == expected.dtype and np.array_equal(got, expected), where
    elif isinstance(expected, dict):
        assert list(got) == list(expected), where
        for key in expected:
            assert_same(expected[key], got[key], f"{where}.{key}")
    elif isinstance(expected, (list, tuple)):
        assert len(got) == len(expected), where
        for i, (a, b) in enumerate(zip(expected, got)):
            assert_same(a, b, f"{where}.{i}")
    else:
        assert got == expected, (where, expected, got)


def build(optim: str, seed: int):
    """A small MLP with dropout (its first weight is big enough for bitsandbytes' 8-bit state), optimizer, schedule."""
    import bitsandbytes as bnb

    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(128, 64), torch.nn.Dropout(0.2), torch.nn.Linear(64, 8))
    optimizer_cls = {"adamw_torch": torch.optim.AdamW, "adamw_8bit": bnb.optim.AdamW8bit,
                     "paged_adamw_8bit": bnb.optim.PagedAdamW8bit}[optim]
    optimizer = optimizer_cls(model.parameters(), lr=1e-2, betas=(0.8, 0.95), weight_decay=0.1)
    scheduler = get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=2, num_training_steps=8)
    return model, optimizer, scheduler


def train_steps(model, optimizer, scheduler, steps: int) -> None:
    """Each step draws from python `random` (rows), numpy (input noise) and torch (dropout)."""
    for _ in range(steps):
        rows = random.sample(range(len(INPUTS)), 8)
        noise = torch.from_numpy(np.random.normal(scale=0.1, size=(8, 128)).astype(np.float32))
        loss = model(INPUTS[rows] + noise).pow(2).mean()
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def test_adamw_schedule_and_rng_round_trip(tmp_path):
    model, optimizer, scheduler = build("adamw_torch", seed=0)
    seed_everything(1)
    train_steps(model, optimizer, scheduler, 3)
    save_training_state(tmp_path, optimizer, scheduler)
    save_rng_state(tmp_path)
    draws = (random.random(), np.random.rand(3).tolist(), torch.rand(3))

    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "optimizer.json", "optimizer.safetensors", "rng_state.json", "rng_state.safetensors", "scheduler.json"]
    assert set(load_file(str(tmp_path / "optimizer.safetensors"))) == {
        f"state.{i}.{k}" for i in range(4) for k in ("step", "exp_avg", "exp_avg_sq")}
    optimizer_state = load_state(tmp_path, "optimizer")
    assert optimizer_state["param_groups"][0]["betas"] == (0.8, 0.95)  # a tuple again
    assert_same(optimizer.state_dict(), optimizer_state)
    assert_same(scheduler.state_dict(), load_state(tmp_path, "scheduler"))

    seed_everything(99)
    load_rng_state(tmp_path)
    assert (random.random(), np.random.rand(3).tolist()) == draws[:2]
    assert torch.equal(torch.rand(3), draws[2])

    # A fresh optimizer and schedule take the state through their own load_state_dict.
    _, fresh_optimizer, fresh_scheduler = build("adamw_torch", seed=0)
    load_training_state(tmp_path, fresh_optimizer, fresh_scheduler)
    assert_same(optimizer.state_dict(), fresh_optimizer.state_dict())
    assert fresh_scheduler.get_last_lr() == scheduler.get_last_lr() and fresh_scheduler.last_epoch == 3


@pytest.mark.parametrize("optim", ["adamw_torch", "adamw_8bit", "paged_adamw_8bit"])
def test_resumed_training_is_bit_identical(optim, tmp_path):
    seed_everything(5)
    straight_model, straight_optimizer, straight_scheduler = build(optim, seed=0)
    train_steps(straight_model, straight_optimizer, straight_scheduler, 6)

    seed_everything(5)
    model, optimizer, scheduler = build(optim, seed=0)
    train_steps(model, optimizer, scheduler, 3)
    save_file(model.state_dict(), str(tmp_path / "model.safetensors"))
    save_training_state(tmp_path, optimizer, scheduler)
    save_rng_state(tmp_path)
    if optim != "adamw_torch":  # the 8-bit path, not bitsandbytes' fp32 fallback for small tensors
        assert optimizer.state[model[0].weight]["state1"].dtype == torch.uint8

    # A new process, in effect: other initial weights and RNG, everything restored from the folder.
    seed_everything(123)
    resumed_model, resumed_optimizer, resumed_scheduler = build(optim, seed=7)
    resumed_model.load_state_dict(load_file(str(tmp_path / "model.safetensors")))
    load_training_state(tmp_path, resumed_optimizer, resumed_scheduler)
    load_rng_state(tmp_path)
    train_steps(resumed_model, resumed_optimizer, resumed_scheduler, 3)

    for (name, expected), got in zip(straight_model.named_parameters(), resumed_model.parameters()):
        assert torch.equal(expected, got), name
    assert_same(straight_optimizer.state_dict(), resumed_optimizer.state_dict())
    assert resumed_scheduler.get_last_lr() == straight_scheduler.get_last_lr()
    assert not torch.equal(straight_model[0].weight, build(optim, seed=0)[0][0].weight)  # it trained


# ------------------------------------------------------------------------------------- transformers Trainer
def _trainer(output_dir, max_steps: int = 4):
    import datasets
    from transformers import Trainer, TrainingArguments

    from reaemb_trl.testing import build_tiny_decoder

    class SafeTrainer(SafeCheckpointMixin, Trainer):
        pass

    model, tokenizer = build_tiny_decoder(seed=0)
    for layer in model.model.layers:  # attention dropout, so the resumed run must restore the torch RNG
        layer.self_attn.attention_dropout = 0.1
    rows = torch.randint(3, len(tokenizer), (16, 12), generator=torch.Generator().manual_seed(0)).tolist()
    args = TrainingArguments(output_dir=str(output_dir), max_steps=max_steps, save_strategy="steps", save_steps=2,
                             per_device_train_batch_size=4, learning_rate=3e-3, lr_scheduler_type="cosine",
                             warmup_steps=1, logging_steps=1, report_to="none", use_cpu=True, seed=0,
                             disable_tqdm=True)
    return SafeTrainer(model=model, args=args, train_dataset=datasets.Dataset.from_dict(
        {"input_ids": rows, "labels": rows}))


def test_trainer_mixin_resumes_exactly_without_pickles(tmp_path):
    straight = _trainer(tmp_path / "straight")
    straight.train()
    checkpoint = tmp_path / "straight" / "checkpoint-2"
    files = {p.name for p in checkpoint.iterdir()}
    assert {"model.safetensors", "optimizer.json", "optimizer.safetensors", "scheduler.json", "rng_state.json",
            "rng_state.safetensors", "trainer_state.json", "training_args.json"} <= files
    assert not [p for p in (tmp_path / "straight").rglob("*") if p.name.endswith(PICKLE_SUFFIXES)]

    resumed = _trainer(tmp_path / "resumed")
    resumed.train(resume_from_checkpoint=str(checkpoint))
    expected, got = straight.model.state_dict(), resumed.model.state_dict()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    losses = [[e["loss"] for e in t.state.log_history if "loss" in e] for t in (straight, resumed)]
    assert losses[0] == losses[1] and len(losses[1]) == 4  # the resumed state carries steps 1-2 over
    assert not torch.equal(expected["lm_head.weight"], _trainer(tmp_path / "fresh").model.lm_head.weight)

    # A checkpoint folder with neither our optimizer state nor transformers' optimizer.pt is refused.
    broken = tmp_path / "broken"
    shutil.copytree(checkpoint, broken)
    (broken / "optimizer.json").unlink()
    with pytest.raises(InputError, match=r"broken/optimizer\.json: no optimizer state"):
        _trainer(tmp_path / "again").train(resume_from_checkpoint=str(broken))


def test_unreadable_state_is_refused(tmp_path):
    with pytest.raises(InputError, match=r"scheduler\.json: training state file not found"):
        load_state(tmp_path, "scheduler")
    (tmp_path / "optimizer.json").write_text('{"state": {"__tensor__": "state.0.exp_avg"}}')
    with pytest.raises(InputError, match=r"optimizer\.safetensors: tensor 'state\.0\.exp_avg' is missing"):
        load_state(tmp_path, "optimizer")
    (tmp_path / "optimizer.json").write_text("{not json")
    with pytest.raises(InputError, match=r"optimizer\.json: unreadable training state"):
        load_state(tmp_path, "optimizer")


# ------------------------------------------------------------------------------------------------- LRCL, DDP
@pytest.mark.multiprocess
@pytest.mark.slow
def test_two_process_lrcl_resume_is_bit_identical(prepared_sample, tmp_path):
    from test_lrcl_distributed import _as_args, _free_port, _launch

    from reaemb_trl.testing import save_tiny_decoder

    settings = dict(model_name_or_path=str(save_tiny_decoder(tmp_path / "tiny")), dataset_dir=str(prepared_sample),
                    max_length=40, per_device_train_batch_size=4, gradient_accumulation_steps=2, max_steps=4,
                    learning_rate=5e-3, lora_dropout=0.1, eval_steps=0, eval_items=8, eval_batch_size=8,
                    save_steps=2, report_to="none", seed=5)

    def launch(output, **extra):
        _launch([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                 "--main_process_port", _free_port(), "-m", "reaemb_trl.cli", "lrcl",
                 *_as_args({**settings, "output_dir": str(output), **extra})], output)

    launch(tmp_path / "straight")
    checkpoint = tmp_path / "straight" / "checkpoint-2"
    files = {p.name for p in checkpoint.iterdir()}
    assert {"rng_state_0.json", "rng_state_1.json", "optimizer.safetensors", "model.safetensors"} <= files
    assert not [p for p in (tmp_path / "straight").rglob("*") if p.name.endswith(PICKLE_SUFFIXES)]

    shutil.copytree(checkpoint, tmp_path / "resumed" / "checkpoint-2")
    launch(tmp_path / "resumed", resume_from_checkpoint="latest")
    for name in ("thought_module.safetensors", "adapter/adapter_model.safetensors",
                 "checkpoint-4/optimizer.safetensors"):
        expected, got = (load_file(str(tmp_path / run / name)) for run in ("straight", "resumed"))
        assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected), name
    losses = [[e["loss"] for e in json.loads((tmp_path / run / "trainer_state.json").read_text())["log_history"]]
              for run in ("straight", "resumed")]
    assert losses[0] == losses[1] and len(losses[0]) == 4
