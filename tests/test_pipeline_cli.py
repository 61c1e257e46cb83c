"""`reaemb-trl pipeline` parses its flags with TrlParser like every other sub-command: `--config`, the recipe's
top-level keys as typed flags in `--help`, the recipe's `env:` section, and the dotted `--SECTION.KEY` overrides."""

import os
from pathlib import Path

import pytest
import yaml

from reaemb_trl.cli import main as cli_main

QUICKSTART = Path(__file__).resolve().parents[1] / "recipes" / "quickstart_cpu.yaml"


def test_the_pipeline_parses_through_trl_parser_with_the_recipe_env_and_top_level_flags(tmp_path, capsys,
                                                                                        monkeypatch):
    monkeypatch.delenv("REAEMB_PIPELINE_CLI_TEST", raising=False)  # restored after the test, as TrlParser sets it
    recipe = tmp_path / "pipeline.yaml"
    recipe.write_text(QUICKSTART.read_text() + "env:\n  REAEMB_PIPELINE_CLI_TEST: from-the-recipe\n")
    out = tmp_path / "planned"
    assert cli_main(["pipeline", "--config", str(recipe), "--dry_run", "--seed", "3", "--output-dir", str(out),
                     "--extra_arms", "raw_mean", "lrcl_cooc_sft", "--lrcl.max_steps=12", "--crrl.sigma", "0.05"]) == 0
    assert os.environ["REAEMB_PIPELINE_CLI_TEST"] == "from-the-recipe"  # TrlParser's `env:` handling
    printed = capsys.readouterr().out
    resolved = yaml.safe_load(printed[:printed.index("[pipeline]")])
    assert (resolved["seed"], resolved["output_dir"], resolved["extra_arms"]) == (3, str(out), ["raw_mean",
                                                                                                  "lrcl_cooc_sft"])
    assert resolved["lrcl"]["max_steps"] == 12 and resolved["crrl"]["sigma"] == 0.05
    assert resolved["backbone"] == yaml.safe_load(QUICKSTART.read_text())["backbone"]  # the recipe's, not a default
    assert "[pipeline] raw_mean: would be run" in printed and not out.exists()


def test_pipeline_help_lists_its_flags_and_the_recipe_keys_with_their_help(capsys):
    with pytest.raises(SystemExit) as done:
        cli_main(["pipeline", "--help"])
    assert done.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps the lines
    for flag in ("--output OUTPUT", "--dry-run", "--output_dir OUTPUT_DIR", "--seed SEED", "--backbone BACKBONE",
                 "--extra_arms EXTRA_ARMS", "--config RECIPE.yaml (required)", "--SECTION.KEY VALUE"):
        assert flag in shown, flag
    assert "One seed for data order, views, sampling and initialisation. (default: 42)" in shown
    assert "any of raw_mean, lrcl_cooc_sft" in shown and "(compare, crrl, dataset, export, lrcl)" in shown


@pytest.mark.parametrize("argv, message", [
    ([], "--config RECIPE.yaml is required"),
    (["--config"], "--config needs a recipe file"),
    (["--config", QUICKSTART, "--seed", "1", "--seed=2"], "--seed is given twice"),
    (["--config", QUICKSTART, "--dry-run", "--dry_run"], "--dry_run is given twice"),
    (["--config", QUICKSTART, "--seed", "1", "--lrcl.max_steps"], "--lrcl.max_steps: overrides are `--KEY VALUE`"),
    (["--config", QUICKSTART, "--seeed", "1"], "unknown key(s) ['seeed']; allowed: ['backbone', 'compare', "),
    (["--config", QUICKSTART, "--seed", "-1"], "pipeline: seed must be >= 0, got -1"),
    # a list is given as the other sub-commands take one (`--extra_arms raw_mean lrcl_cooc_sft`), not as YAML
    (["--config", QUICKSTART, "--extra_arms", "[raw_mean]"], "extra_arms: unknown arm(s) ['[raw_mean]']"),
])
def test_a_bad_command_line_is_refused_by_name_before_anything_is_written(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    assert cli_main(["pipeline", *map(str, argv), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert not out.exists()


def test_a_recipe_env_section_must_be_a_mapping(tmp_path, capsys):
    recipe = tmp_path / "pipeline.yaml"
    recipe.write_text("seed: 1\nenv: [A]\n")
    assert cli_main(["pipeline", "--config", str(recipe), "--dry-run"]) == 2
    assert "`env` field should be a dict" in capsys.readouterr().err
