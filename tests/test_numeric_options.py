"""Issue 21, non-finite and out-of-range numbers: every numeric option is checked in its config dataclass (finite,
in range, an integer where the type says so, never a boolean), so the CLI, recipes, the pipeline and its dry run
refuse the same values before any data is read; training stops on a non-finite loss or weight; export refuses to
write non-finite rows."""

import dataclasses

import pytest
import torch

from reaemb_trl.cli import main as cli_main
from reaemb_trl.crrl import CRRLConfig
from reaemb_trl.downstream import RECOMMENDERS, DownstreamConfig
from reaemb_trl.embedder.loading import LoadingOptions
from reaemb_trl.errors import InputError
from reaemb_trl.lrcl import LRCLConfig
from reaemb_trl.recipe import parse_recipe
from reaemb_trl.validation import NonFiniteError, check_number, check_numbers, numeric_kind

NAN, INF = float("nan"), float("inf")


def numeric_fields(config_cls, only=None) -> list[tuple[str, str]]:
    annotations = {}
    for cls in reversed(config_cls.__mro__):  # the classes' own annotations (HfArgumentParser rewrites Field.type)
        annotations.update(vars(cls).get("__annotations__", {}))
    fields = [(f.name, numeric_kind(annotations[f.name])) for f in dataclasses.fields(config_cls)
              if only is None or f.name in only]
    return [(name, kind[0]) for name, kind in fields if kind is not None and not kind[2]]


CRRL_OWN = set(vars(CRRLConfig)["__annotations__"])
CASES = [(LRCLConfig, name, kind, {}) for name, kind in numeric_fields(LRCLConfig)] + \
        [(DownstreamConfig, name, kind, {}) for name, kind in numeric_fields(DownstreamConfig)] + \
        [(entry.config_cls, name, kind, {}) for entry in RECOMMENDERS.values()
         for name, kind in numeric_fields(entry.config_cls)] + \
        [(CRRLConfig, name, kind, {"output_dir": "unused"}) for name, kind in numeric_fields(CRRLConfig, CRRL_OWN)]


def test_every_config_has_numeric_fields_to_check():
    names = {(cls.__name__, name) for cls, name, _, _ in CASES}
    assert {("LRCLConfig", "max_steps"), ("LRCLConfig", "learning_rate"), ("CRRLConfig", "sigma"),
            ("CRRLConfig", "warmup_steps"), ("BERT4RecConfig", "mask_prob"),
            ("DownstreamConfig", "tail_threshold")} <= names
    assert len(CASES) > 50


@pytest.mark.parametrize("config_cls, name, kind, base", CASES,
                         ids=[f"{cls.__name__}.{name}" for cls, name, _, _ in CASES])
def test_every_numeric_field_refuses_nan_inf_and_booleans(config_cls, name, kind, base):
    for bad in (NAN, INF, -INF, True, "ten"):
        with pytest.raises(InputError, match=rf"{name}(\[0\])? must be"):
            config_cls(**base, **{name: bad})
    if kind == "int":
        with pytest.raises(InputError, match=f"{name} must be an integer, got 2.5"):
            config_cls(**base, **{name: 2.5})


@pytest.mark.parametrize("config_cls, settings, message", [
    (LRCLConfig, {"max_steps": 0}, "LRCL config: max_steps must be >= 1, got 0"),
    (LRCLConfig, {"learning_rate": -1e-4}, "learning_rate must be >= 0"),
    (LRCLConfig, {"lora_dropout": 1.0}, r"lora_dropout must be in \[0, 1\), got 1.0"),
    (LRCLConfig, {"logging_steps": 0}, "logging_steps must be >= 1"),
    (LRCLConfig, {"min_temperature": 0.0}, "min_temperature must be > 0"),
    (CRRLConfig, {"sigma": 0.0}, "CRRL config: sigma must be > 0, got 0.0"),
    (CRRLConfig, {"learning_rate": -1.0}, "learning_rate must be >= 0"),
    (CRRLConfig, {"warmup_steps": -5}, "warmup_steps must be >= 0"),
    (CRRLConfig, {"max_steps": 2.5}, "CRRL config: max_steps must be an integer, got 2.5"),
    (CRRLConfig, {"max_steps": 0}, "max_steps must be >= 1"),
    (CRRLConfig, {"max_steps": True}, "max_steps must be an integer, got True"),
    (CRRLConfig, {"epsilon": NAN}, "epsilon must be a finite number"),
    (CRRLConfig, {"beta": -0.1}, "beta must be >= 0"),
    (CRRLConfig, {"reward_weights": [1.0, NAN], "rewards": ["cooc_ndcg", "cooc_softmax"]},
     r"reward_weights\[1\] must be a finite number"),
    (CRRLConfig, {"num_generations": 4.5}, "num_generations must be an integer"),
    (DownstreamConfig, {"recommender_kwargs": {"bert4rec": {"mask_prob": 1.5}}},
     r"downstream config: mask_prob must be in \[0, 1\], got 1.5"),
    (DownstreamConfig, {"tail_threshold": -1}, "tail_threshold must be >= 0, got -1"),
    (DownstreamConfig, {"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    (DownstreamConfig, {"epochs": True}, "epochs must be an integer, got True"),
])
def test_out_of_range_values_are_refused_by_name(config_cls, settings, message):
    base = {"output_dir": "unused"} if config_cls is CRRLConfig else {}
    with pytest.raises(InputError, match=message):
        config_cls(**base, **settings)


def test_values_in_range_pass_and_numeric_strings_and_whole_floats_convert():
    config = LRCLConfig(max_steps=3.0, learning_rate="1e-4", warmup_steps="2")
    assert config.max_steps == 3 and isinstance(config.max_steps, int)
    assert config.learning_rate == 1e-4 and config.warmup_steps == 2
    assert DownstreamConfig(recommender="bert4rec", recommender_kwargs={"bert4rec": {"mask_prob": 1.0}}, dropout=0.0,
                            tail_threshold=0).recommender_config().mask_prob == 1.0
    assert CRRLConfig(output_dir="unused", max_steps=-1).max_steps == -1  # TrainingArguments: train by epochs
    assert check_number(None, "x", "int", ">= 1", optional=True) is None
    with pytest.raises(InputError, match="x must be an integer, got None"):
        check_number(None, "x", "int")
    with pytest.raises(ValueError, match="unknown range rule"):
        check_number(1, "x", rule="between 1 and 2")

    @dataclasses.dataclass
    class Section:
        size: int = 1
        name: str = "a"

    with pytest.raises(ValueError, match="not an int / float field"):
        check_numbers(Section(), "section", {"name": ">= 1"})


def test_recipes_and_flags_refuse_what_the_dataclass_refuses(tmp_path):
    recipe = tmp_path / "lrcl.yaml"
    for text, message in (("max_steps: 2.5\n", "max_steps must be an integer, got 2.5"),
                          ("eval_items: true\n", "eval_items must be an integer, got True"),
                          ("learning_rate: .nan\n", "learning_rate must be a finite number"),
                          ("view_drop_ratio: .inf\n", "view_drop_ratio must be a finite number")):
        recipe.write_text(text)
        with pytest.raises(InputError, match=message):
            parse_recipe(LRCLConfig, ["--config", str(recipe)])
    # flags: argparse refuses what is not an int; NaN goes through float() and is refused by the dataclass
    for flag in (["--max_steps", "2.5"], ["--max_steps", "true"]):
        with pytest.raises(SystemExit):
            parse_recipe(LRCLConfig, flag)
    with pytest.raises(InputError, match="CRRL config: sigma must be a finite number, got nan"):
        parse_recipe(CRRLConfig, ["--output_dir", str(tmp_path / "o"), "--sigma", "nan"])
    with pytest.raises(InputError, match="CRRL config: max_steps must be an integer, got 2.5"):
        recipe.write_text("max_steps: 2.5\n")
        parse_recipe(CRRLConfig, ["--config", str(recipe), "--output_dir", str(tmp_path / "o")])
    assert parse_recipe(LRCLConfig, ["--config", str(recipe), "--max_steps", "4"]).max_steps == 4  # the flag wins


def test_crrl_sigma_nan_fails_before_anything_is_read_or_written(tmp_path, capsys):
    output = tmp_path / "out"
    code = cli_main(["crrl", "--lrcl_model_path", str(tmp_path / "missing-model"), "--dataset_dir",
                     str(tmp_path / "missing-data"), "--output_dir", str(output), "--sigma", "nan"])
    assert code == 2
    assert "sigma must be a finite number, got nan" in capsys.readouterr().err
    assert not output.exists()


def test_pipeline_and_its_dry_run_refuse_bad_numbers_at_load(tmp_path, capsys):
    from reaemb_trl.pipeline import PipelineConfig

    recipe = tmp_path / "pipeline.yaml"
    out = tmp_path / "run"
    cases = [({"lrcl": "{max_steps: 2.5}"}, "`lrcl`: LRCL config: max_steps must be an integer, got 2.5"),
             ({"crrl": "{sigma: .nan}"}, "`crrl`: CRRL config: sigma must be a finite number"),
             ({"export": "{batch_size: -4}"}, "export: batch_size must be >= 1, got -4"),
             ({"compare": "{seeds: true}"}, "compare: seeds must be an integer, got True"),
             ({"compare": "{options: {recommender_kwargs: {bert4rec: {mask_prob: 1.5}}}}"},
              r"mask_prob must be in \[0, 1\], got 1.5"),
             ({"seed": "2.5"}, "pipeline: seed must be an integer, got 2.5")]
    for sections, message in cases:
        recipe.write_text("".join(f"{key}: {value}\n" for key, value in sections.items()))
        with pytest.raises(InputError, match=message):
            PipelineConfig.from_yaml(recipe, output_dir=str(out))
    recipe.write_text("lrcl: {max_steps: 3}\n")
    with pytest.raises(InputError, match=f"{recipe}: `lrcl`: LRCL config: max_steps must be an integer, got 'ten'"):
        PipelineConfig.from_yaml(recipe, overrides={"lrcl.max_steps": "ten"})
    assert cli_main(["pipeline", "--config", str(recipe), "--output", str(out), "--dry-run",
                     "--crrl.sigma", "nan"]) == 2
    assert "sigma must be a finite number" in capsys.readouterr().err
    assert cli_main(["pipeline", "--config", str(recipe), "--output", str(out), "--dry-run",
                     "--lrcl.max_steps", "true"]) == 2
    assert "max_steps must be an integer, got True" in capsys.readouterr().err
    assert not out.exists()
    assert PipelineConfig.from_yaml(recipe, output_dir=str(out)).lrcl == {"max_steps": 3}


@pytest.mark.parametrize("recipe", ["quickstart_cpu.yaml", "quality_smollm2.yaml"])
def test_the_shipped_pipeline_recipes_pass_the_checks(recipe):
    from pathlib import Path

    from reaemb_trl.pipeline import PipelineConfig

    PipelineConfig.from_yaml(Path(__file__).resolve().parents[1] / "recipes" / recipe)


# ---------------------------------------------------------------------------------------------------- export
def test_export_refuses_a_bad_batch_size_before_reading_anything(tmp_path, capsys):
    output = tmp_path / "items.safetensors"
    for value, message in (("-4", "--batch-size must be >= 1, got -4"), ("0", "--batch-size must be >= 1, got 0")):
        code = cli_main(["export", "--model", str(tmp_path / "missing-model"), "--data", str(tmp_path / "missing"),
                         "--output", str(output), "--batch-size", value, "--no-progress"])
        assert code == 2 and message in capsys.readouterr().err
    assert cli_main(["export", "--model", str(tmp_path / "m"), "--data", str(tmp_path / "d"), "--output", str(output),
                     "--pca", "0", "--no-progress"]) == 2
    assert "--pca must be >= 1, got 0" in capsys.readouterr().err
    assert not output.exists()


def test_export_refuses_non_finite_rows_and_writes_nothing(small_dataset, tiny_embedder_folder, tmp_path):
    from reaemb_trl.data import PreparedDataset
    from reaemb_trl.embedder import LatentReasoningEmbedder
    from reaemb_trl.export import ExportOptions, export_item_table

    dataset = PreparedDataset.load(small_dataset)
    embedder = LatentReasoningEmbedder.from_pretrained(tiny_embedder_folder)
    output = tmp_path / "items.safetensors"
    for batch_size in (-4, 0, True, 2.5):
        with pytest.raises(InputError, match="--batch-size must be"):
            export_item_table(embedder, dataset, output, ExportOptions(batch_size=batch_size, show_progress=False))
    with torch.no_grad():
        for param in embedder.thought_module.parameters():
            param.fill_(NAN)  # an all-NaN thought module (a diverged training)
    with pytest.raises(NonFiniteError, match=r"items of this block embed to NaN or inf values \(item ids \[1, 2"):
        export_item_table(embedder, dataset, output, ExportOptions(show_progress=False, normalize=True))
    assert list(tmp_path.iterdir()) == []  # no table, no temp file


# ---------------------------------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def tiny_decoder(tmp_path_factory):
    from reaemb_trl.testing import save_tiny_decoder

    return save_tiny_decoder(tmp_path_factory.mktemp("models") / "tiny-qwen2")


def lrcl_trainer(model, data, output):
    from reaemb_trl.lrcl import LRCLTrainer

    return LRCLTrainer(LRCLConfig(model_name_or_path=str(model), dataset_dir=str(data), output_dir=str(output),
                                  max_length=48, per_device_train_batch_size=4, gradient_accumulation_steps=1,
                                  max_steps=2, eval_steps=0, eval_items=4, eval_batch_size=8, save_steps=1,
                                  report_to="none", seed=3))


def test_lrcl_stops_on_a_nan_loss_naming_the_step(small_dataset, tiny_decoder, tmp_path, monkeypatch):
    from reaemb_trl.lrcl.lrcl_trainer import ContrastiveEmbedder

    forward = ContrastiveEmbedder.forward
    monkeypatch.setattr(ContrastiveEmbedder, "forward", lambda self, **batch: forward(self, **batch) * NAN)
    trainer = lrcl_trainer(tiny_decoder, small_dataset, tmp_path / "out")
    with pytest.raises(NonFiniteError, match="LRCL: the loss became nan at step 1"):
        trainer.train()
    assert not (tmp_path / "out" / "checkpoint-1").exists() and not (tmp_path / "out" / "config.json").exists()


def test_lrcl_stops_when_a_weight_becomes_nan_with_a_finite_loss(small_dataset, tiny_decoder, tmp_path):
    trainer = lrcl_trainer(tiny_decoder, small_dataset, tmp_path / "out")
    step = trainer.optimizer.step
    trainable = [p for p in trainer.model.parameters() if p.requires_grad]

    def poisoned_step(*args, **kwargs):
        result = step(*args, **kwargs)
        with torch.no_grad():
            trainable[0].view(-1)[0] = INF
        return result

    trainer.optimizer.step = poisoned_step
    with pytest.raises(NonFiniteError, match="LRCL: a trainable weight became NaN or inf at step 1"):
        trainer.train()
    assert trainer.history["train"] == []  # the step's loss was finite; nothing of it was recorded or saved
    assert not (tmp_path / "out" / "checkpoint-1").exists()


@pytest.fixture(scope="module")
def crrl_parts(tmp_path_factory, small_dataset):
    from reaemb_trl.crrl import CooccurrenceRewardModel
    from reaemb_trl.embedder import LatentReasoningEmbedder
    from reaemb_trl.testing import save_tiny_decoder

    root = tmp_path_factory.mktemp("crrl")
    backbone = save_tiny_decoder(root / "backbone")
    LatentReasoningEmbedder.from_backbone(str(backbone), LoadingOptions(max_length=40)).save_pretrained(root / "lrcl")
    return root / "lrcl", CooccurrenceRewardModel(small_dataset, num_candidates=4)


def crrl_trainer(crrl_parts, output):
    from reaemb_trl.crrl import EmbeddingGRPOTrainer, item_dataset, load_policy

    lrcl_folder, reward_model = crrl_parts
    args = CRRLConfig(output_dir=str(output), num_generations=4, per_device_train_batch_size=8, max_steps=1,
                      logging_steps=1, save_strategy="no", report_to="none", warmup_steps=0, learning_rate=1e-2,
                      use_cpu=True, lrcl_model_path=str(lrcl_folder), seed=0, num_candidates=4, eval_items=2)
    train_items, _ = reward_model.split_items(0)
    return EmbeddingGRPOTrainer(load_policy(args), args, reward_model,
                                item_dataset(train_items[:8], reward_model.item_texts))


def test_crrl_stops_on_a_nan_loss_naming_the_step(crrl_parts, tmp_path, monkeypatch):
    from reaemb_trl.crrl import crrl_trainer as module

    surrogate = module.surrogate_loss

    def nan_loss(*args, **kwargs):
        loss, ratio = surrogate(*args, **kwargs)
        return loss * NAN, ratio

    monkeypatch.setattr(module, "surrogate_loss", nan_loss)
    trainer = crrl_trainer(crrl_parts, tmp_path / "out")
    with pytest.raises(NonFiniteError, match="CRRL: the loss or the policy's thought mean became NaN or inf at "
                                             "step 1"):
        trainer.train()


def test_crrl_refuses_to_save_nan_weights(crrl_parts, tmp_path):
    trainer = crrl_trainer(crrl_parts, tmp_path / "out")
    with torch.no_grad():
        next(p for p in trainer.model.parameters() if p.requires_grad).view(-1)[0] = NAN
    with pytest.raises(NonFiniteError, match="CRRL: trainable weights hold NaN or inf values at step 0"):
        trainer.save_model(str(tmp_path / "saved"))
    assert not (tmp_path / "saved").exists()
