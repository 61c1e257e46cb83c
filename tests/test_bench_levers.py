"""The lever study end to end on a tiny decoder: every variant's fields, one value per seed, CRRL movement for
the pooling variants, and a re-run that reuses finished variants."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import prepared_sample_subset

from reaemb_trl.testing import save_tiny_decoder

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_levers_end_to_end_on_a_tiny_recipe(tmp_path):
    backbone = save_tiny_decoder(tmp_path / "backbone", arch="llama", hidden_size=32, num_layers=2)
    data = prepared_sample_subset(tmp_path, 120)
    stage = {"max_length": 48, "logging_steps": 1, "report_to": "none", "max_steps": 2, "eval_items": 16,
             "save_steps": 0}
    recipe = {"backbone": str(backbone), "seed": 3,
              "lrcl": {**stage, "per_device_train_batch_size": 8, "eval_steps": 0, "pooling": "thought",
                       "lora_top_layers": 1},
              "crrl": {**stage, "num_generations": 2, "per_device_train_batch_size": 8, "num_iterations": 1,
                       "warmup_steps": 0, "eval_items": 16},
              "compare": {"options": {"epochs": 1, "patience": 1, "max_items": 10, "hidden_size": 16,
                                      "recommender_kwargs": {"sasrec": {"inner_size": 32, "num_layers": 1}}}}}
    recipe_path = tmp_path / "tiny.yaml"
    recipe_path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "out"
    command = [sys.executable, str(REPO / "benchmarks" / "bench_levers.py"), "--json", "--recipe", str(recipe_path),
               "--data", str(data), "--variants", "recipe", "pooling_mean", "lora_all_layers", "--seeds", "2",
               "--crrl-steps", "1", "--output", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900, check=False)
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["backbone"] == str(backbone) and result["seeds"] == [0, 1]
    assert list(result["variants"]) == ["recipe", "pooling_mean", "lora_all_layers"]
    for name, row in result["variants"].items():
        assert all(len(row[key]) == 2 and all(0 <= v <= 1 for v in row[key])
                   for key in ("valid_NDCG@10", "test_NDCG@10", "tail_NDCG@10"))
        assert row["lrcl_seconds"] > 0 and row["export_seconds"] > 0
        assert set(row["lrcl_heldout"]) == {"eval_loss_start", "eval_loss_end", "eval_top1_start", "eval_top1_end"}
        # CRRL runs for the pooling variants only, from the variant's own LRCL embedder
        assert ("crrl" in row) == (name != "lora_all_layers")
    crrl = result["variants"]["pooling_mean"]["crrl"]
    assert crrl["steps"] == 1 and crrl["change"] == pytest.approx(crrl["end"] - crrl["start"])
    saved = json.loads((out / "pooling_mean" / "lrcl" / "config.json").read_text())
    assert saved["pooling"] == "mean"
    assert json.loads((out / "recipe" / "lrcl" / "config.json").read_text())["pooling"] == "thought"
    # the two variants differ only in pooling, so their tables differ
    assert result["variants"]["recipe"]["test_NDCG@10"] != result["variants"]["pooling_mean"]["test_NDCG@10"]
    assert json.loads((out / "levers.json").read_text()) == result
    table = (out / "levers.md").read_text().splitlines()
    assert [line.split(" | ")[0] for line in table[2:]] == ["| recipe", "| pooling_mean", "| lora_all_layers"]
    assert "pooling=mean" in table[3] and "(the recipe)" in table[2] and table[4].endswith("| - |")  # no CRRL there

    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900, check=False)
    assert again.returncode == 0, again.stderr[-4000:]
    assert "[levers]" not in again.stderr  # every variant was finished: none re-run
    assert json.loads(again.stdout.strip().splitlines()[-1]) == result
