"""bench_scale.py end to end on two small catalogues (1k and 2k items): every step measured per size, the synthetic
log covers every item, the exported table is complete, and the growth exponents are the log ratios of the numbers
reported."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from reaemb_trl.data import PreparedDataset, load_embedding_table

REPO = Path(__file__).resolve().parents[1]


def test_bench_scale_measures_every_step_at_every_size(tmp_path):
    sizes = [1000, 2000]
    out = tmp_path / "scale"
    command = [sys.executable, str(REPO / "benchmarks" / "bench_scale.py"), "--json", "--sizes", *map(str, sizes),
               "--interactions-per-item", "10", "--output", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900, check=False)
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result == json.loads((out / "scale.json").read_text())
    assert result["sizes"] == sizes and result["interactions_per_item"] == 10

    steps = result["steps"]
    assert steps["prepare"]["items"] == sizes  # every item of the synthetic catalogue occurs in the log
    for size, interactions in zip(sizes, steps["prepare"]["interactions"]):
        assert 8 * size <= interactions <= 12 * size
    assert steps["candidates"]["cooccurrence_nonzeros"][1] > steps["candidates"]["cooccurrence_nonzeros"][0]
    for step in ("prepare", "candidates", "export"):
        assert len(steps[step]["seconds"]) == len(steps[step]["peak_mib"]) == 2
        assert all(value > 0 for value in steps[step]["seconds"] + steps[step]["peak_mib"])
        for key, exponents in result["growth"][step].items():
            first, second = steps[step][key]
            assert exponents == [round(math.log(second / first) / math.log(2), 2)]
    per_work = result["seconds_growth_per_work"]
    nonzeros = steps["candidates"]["cooccurrence_nonzeros"]
    seconds = steps["candidates"]["seconds"]
    assert per_work["candidates"] == [round(math.log(seconds[1] / seconds[0]) / math.log(nonzeros[1] / nonzeros[0]),
                                            2)]
    export = steps["export"]
    assert export["table_mib"] == [round((n + 1) * 64 * 4 / 2**20, 2) for n in sizes]
    for step in ("candidates", "export"):  # the step's own peak, measured above what its inputs left resident
        memory = steps[step]
        assert all(peak >= loaded + working - 0.05 and working >= 0 for peak, loaded, working
                   in zip(memory["peak_mib"], memory["loaded_mib"], memory["working_mib"]))

    dataset = PreparedDataset.load(out / "items_2000" / "prepared")
    table, metadata = load_embedding_table(out / "items_2000" / "items.safetensors", num_items=dataset.num_items)
    assert metadata["num_items"] == "2000" and np.abs(table[1:]).sum(axis=1).min() > 0
    assert (out / "scale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (out / "scale.md").read_text()
    assert "| export | working MiB |" in markdown and "2,000 items" in markdown


def test_bench_scale_compares_with_a_baseline_under_a_memory_budget(tmp_path):
    # The checkout itself as the baseline: the plumbing (PYTHONPATH, the budget, the ratios) is what is tested.
    out = tmp_path / "scale"
    command = [sys.executable, str(REPO / "benchmarks" / "bench_scale.py"), "--json", "--sizes", "500",
               "--interactions-per-item", "10", "--output", str(out), "--steps", "prepare", "candidates",
               "--max-memory", "64MiB", "--baseline", str(REPO)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900, check=False)
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["max_memory"] == "64MiB" and set(result["steps"]) == {"prepare", "candidates"}
    assert result["baseline"]["source"] == str(REPO) and set(result["baseline"]["steps"]) == {"prepare", "candidates"}
    for step, ratios in result["ratio_to_baseline"].items():
        for key, (ratio,) in ratios.items():
            assert ratio == round(result["steps"][step][key][0] / result["baseline"]["steps"][step][key][0], 3)
    assert result["baseline"]["steps"]["prepare"]["interactions"] == result["steps"]["prepare"]["interactions"]
    assert "(baseline)" in run.stderr and "(this version)" in run.stderr
    refused = subprocess.run([*command[:2], "--baseline", str(tmp_path), "--output", str(out)], capture_output=True,
                             text=True, env=env, check=False)
    assert refused.returncode == 2 and "no reaemb_trl/ folder there" in refused.stderr
