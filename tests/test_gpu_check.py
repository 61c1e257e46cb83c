"""`gpu_check.sh --device cpu --dry-run`: every part runs at toy sizes and the JSON has the GPU run's keys."""

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": str(REPO / ".venv" / "bin" / "python")}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_dry_run_prints_every_key_with_its_type():
    result = _run("--device", "cpu", "--dry-run")
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout)
    assert report["dry_run"] is True and isinstance(report["machine"], str)
    for key in ("max_rel_err", "lrcl_step_ratio", "group_sampling_ratio"):
        assert isinstance(report["fast_vs_reference"][key], float)
    assert report["fast_vs_reference"]["max_rel_err"] < 1e-3
    for part in ("lrcl", "crrl"):
        assert report[part]["steps_per_s"] > 0 and isinstance(report[part]["peak_memory_gib"], float)
    assert report["lrcl"]["attention"] == "sdpa"
    mfu = report["lrcl_mfu"]
    assert isinstance(mfu["mfu"], float) and mfu["flops_per_step"] == 4 * mfu["params_n"] * mfu["tokens_per_step"]
    assert "4 x N x T" in mfu["flop_formula"] and isinstance(mfu["peak_tflops"], float)
    assert report["qlora_lrcl"]["skipped"].startswith("DRY RUN")  # skipped only in a dry run, and marked so
    assert set(report["qlora_lrcl"]) == {"skipped", "steps_per_s", "peak_memory_gib"}


def test_a_gpu_run_without_cuda_fails_loudly():
    result = _run()  # --device cuda by default; this machine has no GPU
    assert result.returncode != 0
    assert "MISSING" in result.stderr and "CUDA" in result.stderr


def test_cpu_without_dry_run_is_refused():
    result = _run("--device", "cpu")
    assert result.returncode != 0 and "--dry-run" in result.stderr
