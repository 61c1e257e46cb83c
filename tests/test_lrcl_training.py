"""LRCL end to end: MiniLM learns on the bundled sample, exact resume, QLoRA on CPU, bad input."""

import json
import shutil
import warnings

import pytest
import torch
from safetensors.torch import load_file

from reaemb_trl.cli import main as cli_main
from reaemb_trl.errors import InputError
from reaemb_trl.hub import files_to_push
from reaemb_trl.lrcl import LRCLConfig, LRCLTrainer
from reaemb_trl.testing import save_tiny_decoder
from reaemb_trl.training_state import checkpoint_folders


@pytest.fixture(scope="module")
def tiny_decoder(tmp_path_factory):
    return save_tiny_decoder(tmp_path_factory.mktemp("models") / "tiny-qwen2")


def tiny_config(model, data, output, **overrides) -> LRCLConfig:
    settings = dict(model_name_or_path=str(model), dataset_dir=str(data), output_dir=str(output), max_length=48,
                    per_device_train_batch_size=4, gradient_accumulation_steps=2, max_steps=6, learning_rate=5e-3,
                    eval_steps=0, eval_items=16, eval_batch_size=16, save_steps=0, report_to="none", seed=3)
    settings.update(overrides)
    return LRCLConfig(**settings)


def trainable_state(trainer) -> dict[str, torch.Tensor]:
    model = trainer.accelerator.unwrap_model(trainer.model)
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


@pytest.mark.slow
def test_minilm_run_lowers_heldout_loss_and_improves_view_retrieval(minilm_lrcl):
    trainer, metrics = minilm_lrcl  # conftest: 20 steps x 8 items, max length 48, seed 0
    output = trainer.output_dir

    state = json.loads((output / "trainer_state.json").read_text())
    before, after = state["eval_history"][0], state["eval_history"][-1]
    assert (before["step"], after["step"], after["eval_items"]) == (0, 20, 256)
    # Measured with these settings (benchmarks/bench_lrcl.py): loss 4.50 -> 1.83, top-1 0.63 -> 0.79.
    assert after["eval_loss"] < before["eval_loss"] - 1.0, (before, after)
    assert after["eval_top1"] > before["eval_top1"] + 0.05, (before, after)
    assert metrics["eval_loss"] == after["eval_loss"]
    assert [entry["step"] for entry in state["log_history"]] == list(range(1, 21))
    assert state["items_per_step"] == 8

    # The output folder is an embedder folder that reloads to the trained model.
    from reaemb_trl.embedder import LatentReasoningEmbedder

    saved_config = json.loads((output / "lrcl_config.json").read_text())
    assert saved_config["max_steps"] == 20 and saved_config["train_items"] == 2420 - 256
    # the similarity the loss trains for is saved with the model (export and sentence-transformers read it)
    from reaemb_trl.lrcl.losses import LOSSES

    assert json.loads((output / "config.json").read_text())["similarity"] == LOSSES[saved_config["loss"]].similarity
    assert (output / "lrcl_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    reloaded = LatentReasoningEmbedder.from_pretrained(output).eval()
    texts = ["title is Pilot G2 Gel Pen; brand is Pilot", "title is Stapler; brand is Swingline"]
    with torch.no_grad():
        expected = trainer.embed_texts(texts)
        got = reloaded(**reloaded.tokenize(texts)).embeddings.float()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_resume_gives_the_same_parameters_as_a_straight_run(prepared_sample, tiny_decoder, tmp_path):
    # LoRA dropout on and two accumulation steps: the torch RNG and the accumulation state must both resume.
    straight = LRCLTrainer(tiny_config(tiny_decoder, prepared_sample, tmp_path / "a", save_steps=2, max_steps=4,
                                       lora_dropout=0.1))
    straight.train()
    assert [p.name for p in checkpoint_folders(tmp_path / "a")] == ["checkpoint-2", "checkpoint-4"]
    # Checkpoints hold the trained weights only, not the frozen backbone.
    saved = load_file(str(tmp_path / "a" / "checkpoint-2" / "model.safetensors"))
    assert set(saved) == set(trainable_state(straight))
    # Optimizer, schedule and RNG are safetensors + JSON: no pickle anywhere.
    files = {p.name for folder in checkpoint_folders(tmp_path / "a") for p in folder.rglob("*") if p.is_file()}
    assert {"optimizer.json", "optimizer.safetensors", "scheduler.json", "rng_state_0.json"} <= files
    assert not [name for name in files if name.endswith((".pkl", ".bin", ".pt", ".pth"))], files

    # A fresh run folder holding only the half-way checkpoint, resumed with "latest".
    shutil.copytree(tmp_path / "a" / "checkpoint-2", tmp_path / "b" / "checkpoint-2")
    resumed = LRCLTrainer(tiny_config(tiny_decoder, prepared_sample, tmp_path / "b", save_steps=2, max_steps=4,
                                      lora_dropout=0.1, resume_from_checkpoint="latest"))
    resumed.train()

    expected, got = trainable_state(straight), trainable_state(resumed)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    losses_a = [e["loss"] for e in json.loads((tmp_path / "a" / "trainer_state.json").read_text())["log_history"]]
    losses_b = [e["loss"] for e in json.loads((tmp_path / "b" / "trainer_state.json").read_text())["log_history"]]
    assert losses_a == losses_b and len(losses_a) == 4  # the resumed run carries the first half of the curve over
    assert any(not torch.equal(p, torch.zeros_like(p)) for n, p in got.items() if "lora_B" in n)  # it trained
    card = (tmp_path / "a" / "README.md").read_text()
    dataset_sha256 = json.loads((tmp_path / "a" / "lrcl_config.json").read_text())["dataset_sha256"]
    assert "# Item embedder (LRCL)" in card and f"`{tiny_decoder}`" in card and dataset_sha256 in card
    assert "| eval_loss (start) |" in card and "| eval_loss (end) |" in card and "max_steps: 4" in card
    # what a push uploads: the embedder folder and its card, no checkpoint
    pushed = files_to_push(tmp_path / "a")
    assert {"README.md", "config.json", "thought_module.safetensors", "adapter/adapter_model.safetensors",
            "lrcl_config.json"} <= set(pushed)
    assert not [name for name in pushed if name.startswith("checkpoint-")]

    # A checkpoint without its optimizer state is refused, naming the missing file.
    shutil.copytree(tmp_path / "a" / "checkpoint-2", tmp_path / "d" / "checkpoint-2")
    (tmp_path / "d" / "checkpoint-2" / "optimizer.json").unlink()
    with pytest.raises(InputError, match=r"checkpoint-2/optimizer\.json"):
        LRCLTrainer(tiny_config(tiny_decoder, prepared_sample, tmp_path / "d", resume_from_checkpoint="latest")).train()

    # The same checkpoint offered to a different backbone is refused.
    other = save_tiny_decoder(tmp_path / "tiny-llama", arch="llama", hidden_size=32, num_heads=4, num_kv_heads=2)
    with pytest.raises(InputError, match="different model"):
        LRCLTrainer(tiny_config(other, prepared_sample, tmp_path / "c",
                                resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-2"))).train()


def test_qlora_tiny_decoder_trains_on_cpu(prepared_sample, tiny_decoder, tmp_path):
    import bitsandbytes as bnb
    from bitsandbytes.nn import Linear4bit

    config = tiny_config(tiny_decoder, prepared_sample, tmp_path / "q", quantization="4bit", max_steps=3,
                         gradient_accumulation_steps=1, save_steps=1, save_total_limit=2, report_to="tensorboard",
                         optim="paged_adamw_8bit")
    trainer = LRCLTrainer(config)
    model = trainer.accelerator.unwrap_model(trainer.model)
    assert any(isinstance(module, Linear4bit) for module in model.modules())
    assert isinstance(trainer.optimizer.optimizer, bnb.optim.PagedAdamW8bit)
    before = trainable_state(trainer)
    trainer.train()
    after = trainable_state(trainer)
    losses = [entry["loss"] for entry in trainer.history["train"]]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(before[n], after[n]) for n in before if "lora_" in n)
    assert any(not torch.equal(before[n], after[n]) for n in before if "thought" in n)
    # Only the last two checkpoints are kept; tensorboard (the default tracker) wrote its event file.
    assert [p.name for p in checkpoint_folders(tmp_path / "q")] == ["checkpoint-2", "checkpoint-3"]
    assert list((tmp_path / "q" / "logs").rglob("events.out.tfevents.*"))


def test_no_thought_trains_without_the_thought_module(prepared_sample, tiny_decoder, tmp_path):
    trainer = LRCLTrainer(tiny_config(tiny_decoder, prepared_sample, tmp_path / "nt", no_thought=True, max_steps=2,
                                      gradient_accumulation_steps=1, loss="infonce"))
    names = set(trainable_state(trainer))
    assert names and not any("thought" in name for name in names)
    trainer.train()
    assert len(trainer.history["train"]) == 2
    # The saved folder remembers the ablation: it embeds without thought unless told otherwise.
    from reaemb_trl.embedder import LatentReasoningEmbedder

    reloaded = LatentReasoningEmbedder.from_pretrained(tmp_path / "nt")
    assert reloaded.config.use_thought is False
    texts = ["title is Stapler; brand is Swingline", "title is Gel Pen"]
    assert torch.equal(reloaded.encode(texts, show_progress=False),
                       reloaded.encode(texts, use_thought=False, show_progress=False))
    assert not torch.allclose(reloaded.encode(texts, show_progress=False),
                              reloaded.encode(texts, use_thought=True, show_progress=False))


def test_bad_input(prepared_sample, tiny_decoder, tmp_path, capsys):
    with pytest.raises(InputError, match="prepared dataset folder not found"):
        LRCLTrainer(tiny_config(tiny_decoder, tmp_path / "missing", tmp_path / "o1"))

    from reaemb_trl.data import prepare_dataset, sample_dataset_files

    inter, _ = sample_dataset_files()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        no_text = prepare_dataset("seqjson", interactions=inter, output=tmp_path / "no-text")
    with pytest.raises(InputError, match="LRCL needs item text"):
        LRCLTrainer(tiny_config(tiny_decoder, no_text, tmp_path / "o2"))
    (tmp_path / "two.json").write_text('{"u1": [1, 2, 1], "u2": [2, 1, 2]}')
    (tmp_path / "two_items.json").write_text('{"1": {"title": "Pen"}, "2": {"title": "Stapler"}}')
    two = prepare_dataset("seqjson", interactions=tmp_path / "two.json", items=tmp_path / "two_items.json",
                          output=tmp_path / "two")
    with pytest.raises(InputError, match="2 items have text; with 1 held out for evaluation, 1 remain"):
        LRCLTrainer(tiny_config(tiny_decoder, two, tmp_path / "o4"))

    recipe = tmp_path / "lrcl.yaml"
    recipe.write_text(f"model_name_or_path: {tiny_decoder}\ndataset_dir: {prepared_sample}\nmax_step: 3\n")
    assert cli_main(["lrcl", "--config", str(recipe)]) == 2
    assert "max_step" in capsys.readouterr().err

    with pytest.raises(InputError, match="no checkpoint-N folder to resume from"):
        LRCLTrainer(tiny_config(tiny_decoder, prepared_sample, tmp_path / "o3",
                                resume_from_checkpoint="latest")).train()


def test_every_lrcl_tensorboard_tag_lands_under_output_dir(prepared_sample, tiny_decoder, tmp_path, monkeypatch):
    """The LRCL counterpart of CRRL's events test: training and held-out scalars, all under output_dir, none in the
    working directory."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.chdir(tmp_path)
    output = tmp_path / "out"
    LRCLTrainer(tiny_config(tiny_decoder, prepared_sample, output, max_steps=2, logging_steps=1, eval_steps=1,
                            report_to="tensorboard")).train()
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["out"]
    tags = set()
    for events in output.rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    assert {"train_loss", "learning_rate", "eval_loss"} <= tags, tags
