"""Every recipe in recipes/ parses against the config it is written for; unknown keys and missing data fail early."""

from pathlib import Path

import pytest
import yaml

from reaemb_trl.errors import InputError

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"
RECIPES = sorted(RECIPES_DIR.rglob("*.yaml"))
ACCELERATE_CONFIGS = [*sorted((RECIPES_DIR / "accelerate").glob("*.yaml")),
                      RECIPES_DIR.parent / "accelerate_config.yaml"]


def _kind(path: Path) -> str:
    if path.parent.name == "accelerate":
        return "accelerate"
    for stage in ("lrcl", "crrl"):
        if path.stem.startswith(stage):
            return stage
    return "pipeline"


def _parse(path: Path):
    from reaemb_trl.crrl import CRRLConfig
    from reaemb_trl.lrcl import LRCLConfig
    from reaemb_trl.pipeline import PipelineConfig
    from reaemb_trl.recipe import parse_recipe

    kind = _kind(path)
    if kind == "lrcl":
        return parse_recipe(LRCLConfig, ["--config", str(path)])
    if kind == "crrl":
        # GPU recipes ask for bf16, which TrainingArguments refuses on a CPU-only machine unless use_cpu is set.
        return parse_recipe(CRRLConfig, ["--config", str(path), "--use_cpu", "true"])
    return PipelineConfig.from_yaml(path)


def test_recipe_folder_has_every_kind():
    kinds = {_kind(p) for p in RECIPES}
    assert kinds == {"accelerate", "lrcl", "crrl", "pipeline"}
    names = {p.relative_to(RECIPES_DIR).as_posix() for p in RECIPES}
    for required in ("quickstart_cpu.yaml", "qwen2.5-0.5b/lrcl.yaml", "qwen2.5-0.5b/crrl.yaml", "qlora/lrcl.yaml",
                     "qlora/crrl.yaml", "accelerate/single_gpu.yaml", "accelerate/deepspeed_zero2.yaml",
                     "accelerate/fsdp.yaml"):
        assert required in names


@pytest.mark.parametrize("path", [p for p in RECIPES if _kind(p) != "accelerate"],
                         ids=lambda p: p.relative_to(RECIPES_DIR).as_posix())
def test_stage_and_pipeline_recipes_parse_to_their_values(path):
    config = _parse(path)
    raw = yaml.safe_load(path.read_text())
    if _kind(path) == "pipeline":
        assert config.to_dict()["lrcl"] == raw.get("lrcl", {})
        return
    for key, value in raw.items():
        parsed = getattr(config, key)
        parsed = getattr(parsed, "value", parsed)  # enums of TrainingArguments
        if key == "report_to" and isinstance(value, str):  # a tracker name or `none` becomes a list of trackers
            value = [] if value == "none" else [value]
        assert parsed == value or str(parsed) == str(value), \
            f"{path}: {key} parsed as {parsed!r}, recipe says {value!r}"


def test_every_recipe_documents_its_keys():
    for path in RECIPES:
        text = path.read_text()
        assert text.lstrip().startswith("#"), f"{path} has no header comment saying what it is for"
        if _kind(path) != "accelerate":
            undocumented = [line.strip() for line in text.splitlines()
                            if line.strip() and not line.lstrip().startswith("#") and "#" not in line]
            assert not undocumented, f"{path}: keys without a comment: {undocumented}"


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_accelerate_configs_load(path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))
    assert config.mixed_precision == "bf16"
    assert config.num_processes >= 1


def test_default_accelerate_config_is_multi_gpu_ddp():
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(RECIPES_DIR.parent / "accelerate_config.yaml"))
    assert config.distributed_type == "MULTI_GPU" and config.gpu_ids == "all"


@pytest.mark.parametrize("stage", ["lrcl", "crrl"])
def test_unknown_stage_key_is_named(tmp_path, stage):
    recipe = tmp_path / f"{stage}.yaml"
    recipe.write_text("learning_rate: 1.0e-4\nlerning_rate_typo: 3\n")
    with pytest.raises(InputError, match="lerning_rate_typo"):
        _parse(recipe)


def test_unknown_pipeline_keys_are_named(tmp_path):
    from reaemb_trl.pipeline import PipelineConfig

    for body, name in (("seeed: 1\n", "seeed"), ("lrcl:\n  max_stepz: 3\n", "max_stepz"),
                       ("compare:\n  seedz: 2\n", "seedz"), ("crrl:\n  sigmaa: 0.1\n", "sigmaa")):
        recipe = tmp_path / "pipeline.yaml"
        recipe.write_text(body)
        with pytest.raises(InputError, match=name):
            PipelineConfig.from_yaml(recipe)


def test_missing_dataset_fails_before_any_stage_runs(tmp_path):
    from reaemb_trl.pipeline import PipelineConfig, PipelineRunner

    missing = tmp_path / "nowhere" / "inter.json"
    recipe = tmp_path / "pipeline.yaml"
    recipe.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "out"),
                                      "dataset": {"format": "seqjson", "interactions": str(missing),
                                                  "items": str(missing)}}))
    with pytest.raises(InputError, match=str(missing)):
        PipelineRunner(PipelineConfig.from_yaml(recipe)).run()
    assert not (tmp_path / "out").exists()


PATH_KEYS = ("output_dir", "model_name_or_path", "lrcl_model_path", "dataset_dir", "logging_dir", "backbone",
             "interactions", "items")


def _path_values(node, key=None):
    if isinstance(node, dict):
        for name, value in node.items():
            yield from _path_values(value, name)
    elif key in PATH_KEYS and isinstance(node, str):
        yield key, node


@pytest.mark.parametrize("path", [p for p in RECIPES if _kind(p) != "accelerate"],
                         ids=lambda p: p.relative_to(RECIPES_DIR).as_posix())
def test_path_values_hold_no_comment_or_stray_space(path):
    """`key: value# comment` (no space before #) keeps the comment in the value: a garbage output folder."""
    for key, value in _path_values(yaml.safe_load(path.read_text())):
        assert "#" not in value and value == value.strip() and " " not in value, f"{path}: {key}={value!r}"


@pytest.mark.parametrize("command", ["lrcl", "crrl", "pipeline"])
def test_recipe_with_a_yaml_syntax_error_names_file_and_line(tmp_path, capsys, command):
    from reaemb_trl.cli import main

    recipe = tmp_path / "bad.yaml"
    recipe.write_text("max_steps: 3\nlearning_rate: [1e-3\nseed: 1\n")
    assert main([command, "--config", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert f"{recipe}, line " in err and "not valid YAML" in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["lrcl", "crrl"])
def test_config_flag_without_a_value(capsys, command):
    from reaemb_trl.cli import main

    assert main([command, "--config"]) == 2
    assert "--config needs a recipe file" in capsys.readouterr().err
