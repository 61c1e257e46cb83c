"""Two real CPU processes (torchrun, gloo): DDP keeps the thought module identical on both ranks."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from reaemb_trl.embedder import LatentReasoningEmbedder
from reaemb_trl.embedder.loading import LoadingOptions
from reaemb_trl.testing import save_tiny_decoder

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "tests" / "scripts" / "crrl_two_process.py"


def _free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


@pytest.mark.multiprocess
@pytest.mark.slow
def test_two_processes_end_with_identical_parameters(prepared_sample, tmp_path):
    backbone = save_tiny_decoder(tmp_path / "tiny")
    LatentReasoningEmbedder.from_backbone(str(backbone),
                                          LoadingOptions(max_length=40)).save_pretrained(tmp_path / "lrcl")
    output = tmp_path / "out"
    settings = dict(lrcl_model_path=tmp_path / "lrcl", dataset_dir=prepared_sample, output_dir=output,
                    num_generations=4, per_device_train_batch_size=8, max_steps=4, num_iterations=2,
                    learning_rate=5e-2, warmup_steps=0, eval_items=0, save_strategy="no", logging_steps=1,
                    report_to="none", seed=3)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", _free_port(),
               str(WORKER), *[part for key, value in settings.items() for part in (f"--{key}", str(value))]]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]

    ranks = [json.loads((output / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["num_processes"] for r in ranks] == [2, 2]
    assert ranks[0]["before"] == ranks[1]["before"]
    assert ranks[0]["sha256"] != ranks[0]["before"]  # the run trained
    assert ranks[0]["sha256"] == ranks[1]["sha256"]  # and DDP kept the replicas identical
    # Each rank drew its own items (and its own noise), so identical results need the gradient all-reduce.
    # 2 groups per generation, one generation per 2 steps (num_iterations=2)
    assert len(ranks[0]["items"]) == len(ranks[1]["items"]) == 2 * 2
    assert set(ranks[0]["items"]) != set(ranks[1]["items"])
    assert ranks[0]["rewards"] == ranks[1]["rewards"]  # rewards are gathered over both ranks before logging
