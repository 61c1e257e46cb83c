"""Issue 23 §4 / §6 and issue 22 §4: one set of embedder loading options, names that say one thing, one parser."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml

from reaemb_trl.cli import main as cli_main
from reaemb_trl.crrl import CRRLConfig
from reaemb_trl.embedder.loading import LoadingOptions
from reaemb_trl.errors import InputError
from reaemb_trl.lrcl import LRCLConfig
from reaemb_trl.lrcl.lrcl_trainer import build_embedder
from reaemb_trl.pipeline import PipelineConfig, PipelineRunner
from reaemb_trl.recipe import parse_recipe
from reaemb_trl.testing import save_tiny_decoder


def test_the_options_are_defined_once():
    names = {f.name for f in dataclasses.fields(LoadingOptions)}
    assert names <= {f.name for f in dataclasses.fields(LRCLConfig)}  # inherited, not written again
    for name in ("model_revision", "dtype"):  # CRRL exposes the two that apply to a saved folder, same defaults
        assert CRRLConfig.__dataclass_fields__[name].default == LoadingOptions.__dataclass_fields__[name].default
    assert CRRLConfig(output_dir="o", use_cpu=True, dtype="bfloat16").loading_options().dtype == "bfloat16"


@pytest.mark.parametrize("config_cls, argv, new", [
    (CRRLConfig, ["--model_name_or_path", "lrcl"], "lrcl_model_path"),
    (CRRLConfig, ["--gradient_checkpointing", "true"], "activation_checkpointing"),
    (LRCLConfig, ["--gradient_checkpointing=true"], "activation_checkpointing"),
])
def test_renamed_flags_are_refused_with_the_new_name(config_cls, argv, new):
    old = argv[0][2:].split("=")[0]
    with pytest.raises(InputError, match=f"{old} is now {new}"):
        parse_recipe(config_cls, ["--output_dir", "o", *argv])


def test_renamed_recipe_keys_are_refused_with_the_new_name(tmp_path):
    recipe = tmp_path / "crrl.yaml"
    recipe.write_text("model_name_or_path: out/lrcl\noutput_dir: out/crrl\n")
    with pytest.raises(InputError, match="model_name_or_path is now lrcl_model_path"):
        parse_recipe(CRRLConfig, ["--config", str(recipe)])
    with pytest.raises(InputError, match="gradient_checkpointing is now activation_checkpointing"):
        CRRLConfig(output_dir="o", use_cpu=True, gradient_checkpointing=True)  # the Python API too
    with pytest.raises(InputError, match=r"unknown key\(s\) in `lrcl`: \['gradient_checkpointing'\] "
                                         r"\(gradient_checkpointing is now activation_checkpointing\)"):
        PipelineConfig(output_dir=str(tmp_path / "out"), lrcl={"gradient_checkpointing": True})


def test_export_parses_a_recipe_like_every_command(tiny_embedder_folder, small_dataset, tmp_path, capsys):
    recipe = tmp_path / "export.yaml"
    output = tmp_path / "items.npy"
    recipe.write_text(yaml.safe_dump({"model": [str(tiny_embedder_folder)], "data": str(small_dataset),
                                      "output": [str(output)], "format": "npy", "batch_size": 8}))
    assert cli_main(["export", "--config", str(recipe), "--no-progress"]) == 0
    assert output.is_file() and f"wrote {output}" in capsys.readouterr().out
    # a flag after the recipe overrides it
    assert cli_main(["export", "--config", str(recipe), "--batch_size", "0", "--no-progress"]) == 2
    assert "--batch-size must be >= 1, got 0" in capsys.readouterr().err


def test_the_raw_arm_is_built_with_lrcls_loading_options(tmp_path):
    backbone = save_tiny_decoder(tmp_path / "backbone")
    lrcl = {"max_length": 40, "attn_implementation": "eager", "lora_r": 4, "lora_top_layers": 1, "pooling": "last"}
    config = PipelineConfig(output_dir=str(tmp_path / "out"), backbone=str(backbone), lrcl=lrcl)
    runner = PipelineRunner(config, log=lambda message: None)
    settings = config.lrcl_settings(tmp_path / "data")
    runner._save_raw_backbone(tmp_path / "raw", settings, {})
    raw = json.loads((tmp_path / "raw" / "config.json").read_text())
    assert raw["attn_implementation"] == "eager" and raw["lora"]["r"] == 4 and raw["use_thought"] is False
    assert raw["lora"]["layers_to_transform"] == [1]  # the last of the tiny decoder's two layers
    # one builder: LRCL's own model has the same config but for the thought
    built = build_embedder(LRCLConfig(**settings, output_dir=str(tmp_path / "lrcl"))).config.to_dict()
    different = {key for key in raw if key not in ("_name_or_path", "similarity", "transformers_version")
                 and built.get(key) != raw[key]}
    assert different == {"use_thought"}
