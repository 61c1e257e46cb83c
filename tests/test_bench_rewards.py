"""The reward study end to end on a tiny decoder: CRRL per variant, one export pass, downstream per seed and
protocol, the variant chosen on validation, a re-run that reuses every finished stage, and a second CRRL seed."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import scipy.sparse as sp
import yaml
from conftest import prepared_sample_subset

from reaemb_trl.embedder import LatentReasoningEmbedder
from reaemb_trl.embedder.loading import LoadingOptions
from reaemb_trl.testing import save_tiny_decoder

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import bench_rewards  # noqa: E402


def test_each_variant_reads_the_cooccurrence_of_its_own_window(tmp_path):
    """--data prepared with a window (the quality recipe's) still gives whole-prefix counts to variants without one."""
    data = prepared_sample_subset(tmp_path, 60)
    assert bench_rewards.data_with_window(data, None, tmp_path / "a") == data  # already whole prefixes
    neighbours = bench_rewards.data_with_window(data, 1, tmp_path / "a")
    assert bench_rewards.data_with_window(neighbours, 1, tmp_path / "b") == neighbours
    whole = bench_rewards.data_with_window(neighbours, None, tmp_path / "b")
    assert whole == tmp_path / "b" / "data_whole_prefix"
    assert json.loads((whole / "dataset.json").read_text())["parameters"]["cooc_window"] is None
    counts = {folder: sp.load_npz(folder / "cooccurrence.npz") for folder in (data, neighbours, whole)}
    assert (counts[whole] != counts[data]).nnz == 0 and counts[neighbours].sum() < counts[whole].sum()


@pytest.mark.slow
def test_bench_rewards_end_to_end_on_a_tiny_recipe(tmp_path):
    backbone = save_tiny_decoder(tmp_path / "backbone", arch="llama", hidden_size=32, num_layers=2)
    LatentReasoningEmbedder.from_backbone(str(backbone), LoadingOptions(pooling="thought",
                                                                        max_length=48)).save_pretrained(
        tmp_path / "lrcl")
    data = prepared_sample_subset(tmp_path, 120)
    recipe = {"backbone": str(backbone), "seed": 3,
              "crrl": {"max_steps": 2, "num_generations": 2, "per_device_train_batch_size": 8, "num_iterations": 1,
                       "gradient_accumulation_steps": 2,  # item visits count every micro-batch
                       "warmup_steps": 0, "eval_items": 16, "logging_steps": 1, "report_to": "none",
                       "rewards": ["cooc_softmax"]},
              "compare": {"options": {"epochs": 1, "patience": 1, "max_items": 10, "hidden_size": 16,
                                      "recommender_kwargs": {"sasrec": {"inner_size": 32, "num_layers": 1}}}}}
    recipe_path = tmp_path / "tiny.yaml"
    recipe_path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "out"
    command = [sys.executable, str(REPO / "benchmarks" / "bench_rewards.py"), "--json", "--recipe", str(recipe_path),
               "--lrcl", str(tmp_path / "lrcl"), "--data", str(data), "--variants", "pmi_hard", "pmi_window1",
               "--crrl", "max_steps=2", "per_device_train_batch_size=8",  # after each variant's own length
               "--recommenders", "sasrec", "--protocols", "full", "sampled", "--seeds", "2", "--output", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    seeded = subprocess.run([*command, "--crrl", "seed=7"], capture_output=True, text=True, env=env, timeout=900,
                            check=False)
    assert seeded.returncode == 2 and "--crrl-seeds" in seeded.stderr  # a row's CRRL seed is part of its name
    typo = subprocess.run([*command, "--crrl", "max_step=2"], capture_output=True, text=True, env=env, timeout=900,
                          check=False)
    assert typo.returncode == 2 and "--crrl: max_step is not a CRRL key" in typo.stderr
    broken = [arg if arg != "sampled" else "nonsense" for arg in command]  # fails in the downstream stage
    failed = subprocess.run(broken, capture_output=True, text=True, env=env, timeout=900, check=False)
    assert failed.returncode != 0 and "nonsense" in failed.stderr
    kept = json.loads((out / "rewards.json").read_text())["tables"]
    assert all("crrl" in kept[name] for name in ("pmi_hard", "pmi_window1"))  # saved after each CRRL stage
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900, check=False)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "[rewards] crrl" not in run.stderr  # the failed run's CRRL stages are reused
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result == json.loads((out / "rewards.json").read_text())
    tables = result["tables"]
    assert set(tables) == {"lrcl", "pmi_hard", "pmi_window1"} and "crrl" not in tables["lrcl"]
    assert tables["pmi_hard"]["overrides"] == {"positive_rule": "pmi", "num_hard_negatives": 5,
                                               "per_device_train_batch_size": 8, "max_steps": 2}
    assert tables["pmi_hard"]["variant"] == "pmi_hard" and tables["pmi_hard"]["crrl_seed"] == 3
    for name in ("pmi_hard", "pmi_window1"):
        crrl = tables[name]["crrl"]
        assert crrl["steps"] == 2 and crrl["item_visits"] == 16 and crrl["floor"] < crrl["ceiling"] == 0.5
        assert 0 < crrl["train_start"] <= 1 and 0 < crrl["train_end"] <= 1  # the reward on training items
        config = json.loads((out / name / "crrl_config.json").read_text())
        assert config["positive_rule"] == "pmi" and config["seed"] == 3  # the recipe's
    # the window variant trains on the same sequences with co-occurrence counted between neighbours only
    windowed = Path(json.loads((out / "pmi_window1" / "crrl_config.json").read_text())["dataset_dir"])
    assert windowed.parent == out and json.loads((windowed / "dataset.json").read_text())["parameters"][
        "cooc_window"] == 1
    assert (windowed / "inter.txt").read_bytes() == (data / "inter.txt").read_bytes()
    whole, neighbours = (sp.load_npz(folder / "cooccurrence.npz") for folder in (data, windowed))
    assert 0 < neighbours.sum() < whole.sum() and not (neighbours > whole).nnz  # a window only drops pairs
    assert tables["pmi_window1"]["overrides"]["cooc_window"] == 1
    for row in tables.values():
        for protocol in ("full", "sampled"):
            assert all(len(row["downstream"]["sasrec"][protocol][key]) == 2 for key in ("valid", "test", "tail"))
    valid = {name: sum(tables[name]["downstream"]["sasrec"]["full"]["valid"]) for name in ("pmi_hard", "pmi_window1")}
    assert result["chosen"] == max(valid, key=valid.get)  # chosen on validation under the first protocol
    markdown = (out / "rewards.md").read_text()
    assert ("| pmi_hard | positive_rule=pmi, num_hard_negatives=5, per_device_train_batch_size=8, max_steps=2 "
            "| 2 (16) |") in markdown  # steps (item visits)
    assert "vs lrcl, paired" in markdown

    stamps = {path: path.stat().st_mtime_ns for path in (out / "tables").iterdir()}
    older = json.loads((out / "rewards.json").read_text())  # a study from before the training-item reward was kept
    del older["tables"]["pmi_window1"]["crrl"]["train_start"], older["tables"]["pmi_window1"]["crrl"]["train_end"]
    older["tables"]["pmi_hard"]["downstream"]["sasrec"]["full"]["valid"] = [1.0, 1.0]  # now the best row
    (out / "rewards.json").write_text(json.dumps(older))
    # a study extended by one variant (here a finished one) still chooses among every measured row
    one = [arg for arg in command if arg != "pmi_hard"]
    rerun = subprocess.run(one, capture_output=True, text=True, env=env, timeout=900, check=False)
    assert rerun.returncode == 0 and "[rewards] crrl" not in rerun.stderr and "[rewards] downstream" not in rerun.stderr
    assert stamps == {path: path.stat().st_mtime_ns for path in (out / "tables").iterdir()}
    after = json.loads((out / "rewards.json").read_text())
    assert after.pop("chosen") == "pmi_hard"
    after["tables"]["pmi_hard"]["downstream"]["sasrec"]["full"]["valid"] = (
        result["tables"]["pmi_hard"]["downstream"]["sasrec"]["full"]["valid"])
    # the rest as before: pmi_window1's training-item reward read back from its crrl_metrics.json
    assert after == {key: value for key, value in result.items() if key != "chosen"}

    # a second CRRL seed for one variant: only its new row runs, and the choice is made among the variants measured
    # with both seeds, on their mean. Its finished row's CRRL folder and table are gone, as in a fresh checkout that
    # resumes from a committed rewards.json: neither is needed again
    shutil.rmtree(out / "pmi_hard")
    (out / "tables" / "pmi_hard.safetensors").unlink()
    twice = [*(arg if arg != "pmi_window1" else "pmi_hard" for arg in one), "--crrl-seeds", "3", "7"]
    replicated = subprocess.run(twice, capture_output=True, text=True, env=env, timeout=900, check=False)
    assert replicated.returncode == 0, replicated.stderr[-4000:]
    assert replicated.stderr.count("[rewards] crrl") == 1 and "[rewards] crrl pmi_hard_seed7:" in replicated.stderr
    assert "[rewards] export ['pmi_hard_seed7']" in replicated.stderr
    final = json.loads(replicated.stdout.strip().splitlines()[-1])
    seventh = final["tables"]["pmi_hard_seed7"]
    assert seventh["variant"] == "pmi_hard" and seventh["crrl_seed"] == 7 and seventh["overrides"]["seed"] == 7
    assert json.loads((out / "pmi_hard_seed7" / "crrl_config.json").read_text())["seed"] == 7
    assert final["chosen"] == "pmi_hard" and final["crrl_seeds"] == [3, 7]  # pmi_window1 has one CRRL seed
    valid = [sum(final["tables"][name]["downstream"]["sasrec"]["full"]["valid"]) / 2
             for name in ("pmi_hard", "pmi_hard_seed7")]
    assert f"| pmi_hard | 3, 7 | {sum(valid) / 2:.4f} ± " in (out / "rewards.md").read_text()


def _row(variant: str, crrl_seed: int, valid: float) -> dict:
    return {"variant": variant, "crrl_seed": crrl_seed,
            "downstream": {"sasrec": {"full": {"valid": [valid, valid], "test": [0.0, 0.0], "tail": [0.0, 0.0]}}}}


def test_a_variant_added_with_one_crrl_seed_does_not_displace_a_choice_made_over_three():
    tables = {"lrcl": {"overrides": {}},
              **{f"a_{seed}": _row("a", seed, 0.030) for seed in (42, 43, 44)},
              **{f"b_{seed}": _row("b", seed, valid) for seed, valid in ((42, 0.032), (43, 0.020), (44, 0.020))},
              "new": _row("new", 42, 0.050)}  # best at seed 42 alone
    study = [42, 43, 44]
    assert bench_rewards.choose(tables, study, [42], ["sasrec"], "full") == ("a", study)
    # a study whose runs share no complete seed set falls back to this run's seeds
    del tables["a_44"], tables["b_44"]
    assert bench_rewards.choose(tables, study, [42], ["sasrec"], "full") == ("new", [42])
    assert bench_rewards.choose(tables, study, [42, 43], ["sasrec"], "full") == ("a", [42, 43])
    with pytest.raises(ValueError, match="every CRRL seed of this run"):
        bench_rewards.choose(tables, study, [44], ["sasrec"], "full")
