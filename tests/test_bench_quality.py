"""The quality benchmark: arms per seed from real compare records, the ordering statistics on known numbers (the
opt-in arms raw_mean and lrcl_cooc_sft with their steps, or absent), the markdown and PNG, the pipeline's compare
protocols, opt-in arms and prepared-folder input, and the script end to end."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import prepared_sample_subset

from reaemb_trl.data import PreparedDataset, save_embedding_table
from reaemb_trl.downstream import DownstreamConfig, compare
from reaemb_trl.downstream.quality import (
    ARMS,
    HOLDS_DEFINITION,
    build_quality,
    ordering,
    paired_difference,
    quality_markdown,
    write_quality,
)
from reaemb_trl.errors import InputError
from reaemb_trl.pipeline.pipeline_config import CompareSection, PipelineConfig

REPO = Path(__file__).resolve().parents[1]
ARM_NAMES = ["id_only", "raw", "lrcl_no_thought", "lrcl", "lrcl_crrl"]  # a pipeline run without extra_arms
ALL_ARMS = ["id_only", "raw", "raw_mean", "lrcl_no_thought", "lrcl", "lrcl_cooc_sft", "lrcl_crrl"]
GROUPS = ["overall", "tail_items", "short_users"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def compare_results(tmp_path_factory):
    """A real compare of the five pipeline runs (random item tables) on 150 users: 2 recommenders, both protocols,
    seeds listed out of order."""
    folder = tmp_path_factory.mktemp("quality")
    data = prepared_sample_subset(folder, 150)
    num_items = PreparedDataset.load(data).num_items
    runs = {}
    for i, run in enumerate(ARMS[arm] for arm in ARM_NAMES[1:]):
        table = np.random.default_rng(i).normal(size=(num_items + 1, 16)).astype(np.float32)
        table[0] = 0
        runs[run] = folder / f"{run}.safetensors"
        save_embedding_table(runs[run], table)
    config = DownstreamConfig(epochs=1, patience=1, max_items=10, hidden_size=16, show_progress=False,
                              recommender_kwargs={"sasrec": {"inner_size": 32, "num_layers": 1}})
    return compare(data, runs, folder / "compare", recommenders=["sasrec", "gru4rec"], seeds=[1, 0],
                   protocols=["sampled", "full"], id_only=True, config=config)


def test_arms_follow_the_schema_and_the_records_seed_by_seed(compare_results, tmp_path):
    quality = build_quality(compare_results, "tiny")
    assert quality["backbone"] == "tiny" and quality["seeds"] == [1, 0]
    assert list(quality["arms"]) == ARM_NAMES
    for arm in ARM_NAMES:
        assert list(quality["arms"][arm]) == ["sasrec", "gru4rec"]
        for rec in ("sasrec", "gru4rec"):
            assert list(quality["arms"][arm][rec]) == ["sampled", "full"]  # the order compare was given
            for protocol in ("sampled", "full"):
                assert list(quality["arms"][arm][rec][protocol]) == GROUPS
                for group in GROUPS:
                    assert set(quality["arms"][arm][rec][protocol][group]) == {"NDCG@10", "HR@10"}
    records = {(r["run"], r["recommender"], r["protocol"], r["seed"]): r for r in compare_results["runs"]}
    for arm in ARM_NAMES:
        run = ARMS[arm]
        for rec in ("sasrec", "gru4rec"):
            for protocol in ("sampled", "full"):
                for group in GROUPS:
                    for metric in ("NDCG@10", "HR@10"):
                        assert quality["arms"][arm][rec][protocol][group][metric] == [
                            records[run, rec, protocol, 1][group][metric],
                            records[run, rec, protocol, 0][group][metric]]
    # both protocols of one arm and seed come from one training
    for rec in ("sasrec", "gru4rec"):
        assert records["lrcl", rec, "full", 0]["history"] == records["lrcl", rec, "sampled", 0]["history"]
    steps = quality["ordering"]["sasrec"]["full"]["tail_items"]
    assert list(steps) == ["raw<lrcl_no_thought", "lrcl_no_thought<lrcl", "lrcl<lrcl_crrl", "raw<lrcl_crrl"]
    raw = quality["arms"]["raw"]["sasrec"]["full"]["tail_items"]["NDCG@10"]
    crrl = quality["arms"]["lrcl_crrl"]["sasrec"]["full"]["tail_items"]["NDCG@10"]
    assert steps["raw<lrcl_crrl"]["diffs"] == pytest.approx([crrl[0] - raw[0], crrl[1] - raw[1]])
    assert list(quality["ordering"]["gru4rec"]["sampled"]) == ["overall", "tail_items"]
    # JSON round trip: the file holds exactly what was built
    write_quality(tmp_path, quality)
    assert json.loads((tmp_path / "quality.json").read_text()) == quality
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quality.json", "quality.md", "quality.png"]

    missing = {**compare_results, "runs": [r for r in compare_results["runs"]
                                           if (r["run"], r["seed"], r["protocol"]) != ("lrcl", 0, "full")]}
    with pytest.raises(InputError, match=r"2 compare record\(s\) missing.*lrcl/sasrec/full/seed 0"):
        build_quality(missing, "tiny")


def _records(values: dict[str, list[float]], seeds=(0, 1, 2)) -> list[dict]:
    """Hand-made compare records: `values[arm]` is overall NDCG@10 per seed (tail = half of it, HR = twice it)."""
    records = []
    for arm, per_seed in values.items():
        for seed, value in zip(seeds, per_seed):
            for protocol in ("sampled", "full"):
                scale = 1.0 if protocol == "sampled" else 0.1
                metrics = {"overall": {"NDCG@10": value * scale, "HR@10": 2 * value * scale},
                           "tail_items": {"NDCG@10": value * scale / 2, "HR@10": value * scale},
                           "short_users": {"NDCG@10": None, "HR@10": None}}
                records.append({"run": ARMS[arm], "recommender": "sasrec", "protocol": protocol, "seed": seed,
                                **metrics})
    return records


# Overall NDCG@10 per seed of the default arms, each step's verdict beside the arm it ends at.
KNOWN = {
    "id_only": [0.05, 0.05, 0.05],
    "raw": [0.10, 0.12, 0.11],
    "lrcl_no_thought": [0.12, 0.13, 0.14],  # diffs .02 .01 .03: mean .02 > std .01, all > 0: holds
    "lrcl": [0.13, 0.12, 0.15],  # diffs .01 -.01 .01: one negative: does not hold
    "lrcl_crrl": [0.131, 0.15, 0.152],  # diffs .001 .03 .002: all > 0 but mean .011 < std .0165: does not hold
}


def _results(values: dict[str, list[float]]) -> dict:
    return {"seeds": [0, 1, 2], "recommenders": ["sasrec"], "protocols": ["sampled", "full"], "data": "d",
            "dataset_sha256": "x", "runs": _records(values)}


def test_ordering_statistics_on_known_numbers(tmp_path):
    quality = build_quality(_results(KNOWN), "hand")
    steps = quality["ordering"]["sasrec"]["sampled"]["overall"]

    first = steps["raw<lrcl_no_thought"]
    assert first["diffs"] == pytest.approx([0.02, 0.01, 0.03])
    assert first["mean"] == pytest.approx(0.02) and first["std"] == pytest.approx(0.01)
    assert (first["min"], first["max"]) == pytest.approx((0.01, 0.03))
    assert first["holds"] is True
    second = steps["lrcl_no_thought<lrcl"]
    assert second["diffs"] == pytest.approx([0.01, -0.01, 0.01]) and second["min"] == pytest.approx(-0.01)
    assert second["holds"] is False
    third = steps["lrcl<lrcl_crrl"]
    assert third["mean"] == pytest.approx(0.011)
    assert third["std"] == pytest.approx(math.sqrt((0.01 ** 2 + 0.019 ** 2 + 0.009 ** 2) / 2))
    assert third["min"] > 0 and third["holds"] is False
    overall = steps["raw<lrcl_crrl"]
    assert overall["diffs"] == pytest.approx([0.031, 0.03, 0.042]) and overall["holds"] is True
    # tail NDCG is half of overall here, full ten times smaller: same signs, scaled statistics
    tail = quality["ordering"]["sasrec"]["full"]["tail_items"]["raw<lrcl_no_thought"]
    assert tail["mean"] == pytest.approx(0.001) and tail["std"] == pytest.approx(0.0005) and tail["holds"]

    # an empty group or a single seed cannot hold
    assert paired_difference([None, 0.1], [0.2, 0.3])["holds"] is False
    single = paired_difference([0.1], [0.5])
    assert single["std"] is None and single["holds"] is False and single["mean"] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="same seeds"):
        paired_difference([0.1, 0.2], [0.3])
    assert ordering({"id_only": quality["arms"]["id_only"]}) == {}

    markdown = quality_markdown(quality)
    assert markdown.count("## sasrec · ") == 2 and HOLDS_DEFINITION in markdown

    assert "| raw | 0.1100 ± 0.0100 | 0.2200 ± 0.0200 | 0.0550 ± 0.0050 | 0.1100 ± 0.0100 | - | - |" in markdown
    row = "| sasrec | sampled | overall | raw<lrcl_no_thought | +0.0200 | 0.0100 | +0.0100 | +0.0300 | yes |"
    assert row in markdown
    assert "| sasrec | sampled | overall | lrcl<lrcl_crrl | +0.0110 |" in markdown
    # 2 of the 4 steps hold, in each of 2 protocols x 2 groups
    assert markdown.count("| yes |") == 8 and markdown.count("| no |") == 8

    write_quality(tmp_path, quality)
    png = tmp_path / "quality.png"
    assert png.read_bytes()[:8] == PNG_MAGIC
    import matplotlib.pyplot as plt

    image = plt.imread(png)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 2 * image.shape[0]  # 2 panels side by side
    assert (tmp_path / "quality.md").read_text() == markdown


def test_paired_tests_beside_holds():
    """One-sided p-values against closed forms: the t distribution with 2 degrees of freedom has
    sf(t) = 1/2 - t / (2 sqrt(2 + t^2)); the exact Wilcoxon test of 3 positive differences gives 1/2^3."""
    quality = build_quality(_results(KNOWN), "hand")
    first = quality["ordering"]["sasrec"]["sampled"]["overall"]["raw<lrcl_no_thought"]
    t = 0.02 / (0.01 / math.sqrt(3))
    assert first["t_pvalue"] == pytest.approx(0.5 - t / (2 * math.sqrt(2 + t * t)))
    assert first["wilcoxon_pvalue"] == pytest.approx(0.125)
    second = quality["ordering"]["sasrec"]["sampled"]["overall"]["lrcl_no_thought<lrcl"]
    assert second["t_pvalue"] > 0.2 and second["wilcoxon_pvalue"] > first["wilcoxon_pvalue"]
    # undefined tests are None, not NaN: no spread, no non-zero difference, a single seed
    assert paired_difference([0.5, 0.25, 0.0], [0.75, 0.5, 0.25])["t_pvalue"] is None  # exact binary fractions
    assert paired_difference([0.1, 0.2], [0.1, 0.2])["wilcoxon_pvalue"] is None
    assert paired_difference([0.1], [0.5])["t_pvalue"] is None
    assert "| 0.037 | 0.125 |" in quality_markdown(quality)


def test_opt_in_arms_and_their_steps_on_known_numbers(tmp_path):
    values = {**KNOWN,
              "raw_mean": [0.12, 0.14, 0.13],  # vs lrcl_crrl: diffs .011 .01 .022, mean .0143 > std .0067: holds
              "lrcl_cooc_sft": [0.14, 0.13, 0.15]}  # vs lrcl_crrl: diffs -.009 .02 .002: does not hold
    quality = build_quality(_results(values), "hand")
    assert list(quality["arms"]) == ALL_ARMS
    assert quality["arms"]["raw_mean"]["sasrec"]["full"]["overall"]["NDCG@10"] == pytest.approx([0.012, 0.014, 0.013])
    steps = quality["ordering"]["sasrec"]["sampled"]["overall"]
    assert list(steps) == ["raw<lrcl_no_thought", "lrcl_no_thought<lrcl", "lrcl<lrcl_crrl", "raw<lrcl_crrl",
                           "raw_mean<lrcl_crrl", "lrcl_cooc_sft<lrcl_crrl"]
    best_raw = steps["raw_mean<lrcl_crrl"]
    assert best_raw["diffs"] == pytest.approx([0.011, 0.01, 0.022]) and best_raw["mean"] == pytest.approx(0.043 / 3)
    assert best_raw["std"] == pytest.approx(0.006658, abs=1e-6) and best_raw["holds"] is True
    control = steps["lrcl_cooc_sft<lrcl_crrl"]
    assert control["diffs"] == pytest.approx([-0.009, 0.02, 0.002]) and control["holds"] is False
    # the steps that were there before keep their numbers
    before = build_quality(_results(KNOWN), "hand")["ordering"]["sasrec"]["sampled"]["overall"]
    assert {step: steps[step] for step in before} == before
    markdown = quality_markdown(quality)
    assert "| raw_mean | 0.1300 ± 0.0100 |" in markdown and "| lrcl_cooc_sft | 0.1400 ± 0.0100 |" in markdown
    row = "| sasrec | sampled | overall | raw_mean<lrcl_crrl | +0.0143 | 0.0067 | +0.0100 | +0.0220 | yes |"
    assert row in markdown
    write_quality(tmp_path, quality)
    assert json.loads((tmp_path / "quality.json").read_text())["arms"].keys() == set(ALL_ARMS)

    # a run with one opt-in arm: the other one and its step are simply absent
    one = build_quality(_results({**KNOWN, "raw_mean": values["raw_mean"]}), "hand")
    assert list(one["arms"]) == ["id_only", "raw", "raw_mean", "lrcl_no_thought", "lrcl", "lrcl_crrl"]
    assert list(one["ordering"]["sasrec"]["full"]["tail_items"])[-1] == "raw_mean<lrcl_crrl"


def test_extra_arms_are_opt_in_stages_that_leave_the_others_unchanged(tmp_path):
    from reaemb_trl.pipeline import PipelineRunner
    from reaemb_trl.pipeline.runner import table_runs

    with pytest.raises(InputError, match=r"extra_arms: unknown arm\(s\) \['raw_max'\]; choose from \['raw_mean', "):
        PipelineConfig(extra_arms=["raw_mean", "raw_max"])
    with pytest.raises(InputError, match="must be a list"):
        PipelineConfig(extra_arms="raw_mean")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"extra_arms": ["lrcl_cooc_sft"]}))
    assert table_runs(PipelineConfig.from_yaml(recipe)) == ["raw_backbone", "lrcl_no_thought", "lrcl",
                                                            "lrcl_cooc_sft", "lrcl_crrl"]

    def plan(extra_arms):
        config = PipelineConfig.from_yaml(REPO / "recipes" / "quality_smollm2.yaml", output_dir=str(tmp_path / "o"))
        config.extra_arms = extra_arms
        logged = []
        runner = PipelineRunner(config, log=logged.append, dry_run=True)
        runner.run()
        assert logged == [f"[pipeline] {stage}: would be run" for stage in runner.hashes]
        return runner.hashes

    default, extra = plan([]), plan(["raw_mean", "lrcl_cooc_sft"])
    assert list(default) == ["prepare", "raw_backbone", "lrcl_no_thought", "lrcl", "crrl", "export_raw_backbone",
                             "export_lrcl_no_thought", "export_lrcl", "compare"]
    assert list(extra) == ["prepare", "raw_backbone", "raw_mean", "lrcl_no_thought", "lrcl", "crrl", "cooc_sft",
                           "export_raw_backbone", "export_raw_mean", "export_lrcl_no_thought", "export_lrcl", "compare"]
    # only the stages that read the new tables run again when the arms are turned on
    assert [stage for stage in default if default[stage] != extra[stage]] == ["export_lrcl", "compare"]
    assert not (tmp_path / "o").exists()


def test_compare_section_takes_one_or_several_protocols(tmp_path):
    assert CompareSection().protocol_list() == ["sampled"]
    assert CompareSection(protocol="full").protocol_list() == ["full"]
    assert CompareSection(protocols=["full", "sampled", "full"]).protocol_list() == ["full", "sampled"]
    with pytest.raises(InputError, match="not both"):
        CompareSection(protocol="full", protocols=["sampled"])
    with pytest.raises(InputError, match=r"compare: protocol 'top100' is unknown"):
        CompareSection(protocols=["sampled", "top100"])
    with pytest.raises(InputError, match="non-empty list"):
        CompareSection(protocols="sampled")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"compare": {"protocols": ["sampled", "full"], "seeds": 2}}))
    assert PipelineConfig.from_yaml(recipe).compare.protocol_list() == ["sampled", "full"]
    recipe.write_text(yaml.safe_dump({"compare": {"protocols": ["sampled"], "protocl": "full"}}))
    with pytest.raises(InputError, match=r"unknown key\(s\) \['protocl'\]"):
        PipelineConfig.from_yaml(recipe)


def test_prepared_dataset_folder_is_checked_before_any_stage(tmp_path):
    from reaemb_trl.pipeline import PipelineRunner
    from reaemb_trl.pipeline.pipeline_config import DatasetSection

    config = PipelineConfig(output_dir=str(tmp_path / "out"), dataset=DatasetSection(prepared=str(tmp_path / "no")))
    with pytest.raises(InputError, match="prepared dataset folder not found"):
        PipelineRunner(config)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_bench_quality_script_end_to_end_on_a_tiny_recipe(tmp_path):
    """The script on a tiny random decoder, a prepared 200-user folder and 2 steps per stage, with both opt-in arms;
    a re-run reuses every trained stage."""
    from reaemb_trl.testing import save_tiny_decoder

    backbone = save_tiny_decoder(tmp_path / "backbone", arch="qwen2", hidden_size=32, num_layers=1)
    data = prepared_sample_subset(tmp_path, 200)
    before = sorted(p.name for p in data.iterdir())
    stage = {"max_length": 48, "logging_steps": 1, "report_to": "none", "max_steps": 2, "eval_items": 16,
             "save_steps": 0}
    recipe = {"lrcl": {**stage, "per_device_train_batch_size": 8, "eval_steps": 0},
              "crrl": {**stage, "num_generations": 2, "per_device_train_batch_size": 8, "num_iterations": 1,
                       "warmup_steps": 0, "eval_strategy": "no"},
              "export": {"batch_size": 64},
              "compare": {"options": {"epochs": 1, "patience": 1, "max_items": 10, "hidden_size": 16,
                                      "recommender_kwargs": {"sasrec": {"inner_size": 32, "num_layers": 1}}}}}
    recipe_path = tmp_path / "tiny.yaml"
    recipe_path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "out"
    command = [sys.executable, str(REPO / "benchmarks" / "bench_quality.py"), "--json", "--data", str(data),
               "--backbone", str(backbone), "--recipe", str(recipe_path), "--seeds", "2", "--output", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path, check=False)
    assert run.returncode == 0, run.stderr[-4000:]
    line = run.stdout.strip().splitlines()[-1]
    quality = json.loads(line)
    assert quality["backbone"] == str(backbone) and quality["seeds"] == [0, 1]
    assert list(quality["arms"]) == ALL_ARMS
    for arm in ALL_ARMS:
        assert list(quality["arms"][arm]) == ["sasrec", "gru4rec"]
        for rec in ("sasrec", "gru4rec"):
            assert list(quality["arms"][arm][rec]) == ["full", "sampled"]  # full ranking judges first
            for by_group in quality["arms"][arm][rec].values():
                assert list(by_group) == GROUPS
                assert all(len(by_group[g][m]) == 2 for g in GROUPS for m in ("NDCG@10", "HR@10"))
    assert json.loads((out / "quality.json").read_text()) == quality
    assert (out / "quality.png").read_bytes()[:8] == PNG_MAGIC
    assert "raw<lrcl_no_thought" in (out / "quality.md").read_text()
    assert list(quality["ordering"]["gru4rec"]["full"]["overall"])[-2:] == ["raw_mean<lrcl_crrl",
                                                                            "lrcl_cooc_sft<lrcl_crrl"]
    assert {"prepare", "lrcl", "crrl", "raw_mean", "cooc_sft", "export_raw_mean", "compare"} <= set(
        quality["stage_seconds"])
    assert quality["peak_rss_gib"] > 0.1
    # the opt-in arms' tables, the SFT's from the LRCL folder with CRRL's recipe and item visits (2 steps x 8 / 2)
    assert sorted(p.name for p in (out / "tables").glob("*.safetensors")) == sorted(
        f"{run}.safetensors" for run in ("raw_backbone", "raw_mean", "lrcl_no_thought", "lrcl", "lrcl_cooc_sft",
                                         "lrcl_crrl"))
    assert json.loads((out / "raw_mean" / "config.json").read_text())["pooling"] == "mean"
    sft_metrics = json.loads((out / "cooc_sft" / "cooc_sft_metrics.json").read_text())
    assert sft_metrics["item_visits"] == 2 * 4 and sft_metrics["heldout_items"] == 16
    assert yaml.safe_load((out / "recipes" / "cooc_sft.yaml").read_text())["lrcl_model_path"] == str(out / "lrcl")
    # the prepared folder is used in place: nothing copied into the output, nothing written into it
    assert not (out / "data").exists() and sorted(p.name for p in data.iterdir()) == before
    results = json.loads((out / "compare" / "results.json").read_text())
    assert results["data"] == str(data.resolve()) and results["selection_protocol"] == "full"
    assert "Protocols: `full`, `sampled`" in (out / "report.md").read_text()

    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path, check=False)
    assert again.returncode == 0, again.stderr[-4000:]
    assert again.stderr.count("done earlier with the same config, skipped") == 12  # every stage
    assert json.loads(again.stdout.strip().splitlines()[-1])["arms"] == quality["arms"]
