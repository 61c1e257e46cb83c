"""Two real CPU processes (gloo): the ranks stay in sync and gathered negatives give the global-batch loss."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from reaemb_trl.lrcl import LRCLConfig, LRCLTrainer
from reaemb_trl.testing import save_tiny_decoder

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "tests" / "scripts" / "lrcl_two_process.py"
PER_DEVICE = 4


def _settings(model, data, output, gather: bool) -> dict:
    # LoRA dropout off so the single-process recomputation below sees the very same function.
    return dict(model_name_or_path=str(model), dataset_dir=str(data), output_dir=str(output), max_length=40,
                per_device_train_batch_size=PER_DEVICE, gradient_accumulation_steps=1, max_steps=2,
                learning_rate=5e-3, lora_dropout=0.0, eval_steps=0, eval_items=8, eval_batch_size=8, save_steps=0,
                report_to="none", seed=5, gather_negatives=gather)


def _launch(command: list[str], output: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]


def _free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def _as_args(settings: dict) -> list[str]:
    return [part for key, value in settings.items() for part in (f"--{key}", str(value))]


@pytest.mark.multiprocess
@pytest.mark.slow
def test_two_processes_sync_and_gather_negatives(prepared_sample, tmp_path):
    model = save_tiny_decoder(tmp_path / "tiny")
    gathered, local = tmp_path / "gathered", tmp_path / "local"
    _launch([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", _free_port(),
             str(WORKER), *_as_args(_settings(model, prepared_sample, gathered, True))], gathered)
    # The other run goes through the real CLI under `accelerate launch` (MULTI_CPU would silently run one process).
    _launch([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
             "--main_process_port", _free_port(), "-m", "reaemb_trl.cli", "lrcl",
             *_as_args(_settings(model, prepared_sample, local, False))], local)

    ranks = [json.loads((gathered / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["num_processes"] for r in ranks] == [2, 2]
    assert ranks[0]["sha256"] == ranks[1]["sha256"]  # DDP kept the replicas identical
    assert ranks[0]["losses"] == ranks[1]["losses"] and len(ranks[0]["losses"]) == 2
    local_state = json.loads((local / "trainer_state.json").read_text())
    assert local_state["items_per_step"] == 2 * PER_DEVICE
    assert json.loads((local / "lrcl_config.json").read_text())["num_processes"] == 2

    # Recompute step 1 in this process: the global micro-batch is stream positions 0..7, rank r held 4r..4r+3.
    reference = LRCLTrainer(LRCLConfig(**_settings(model, prepared_sample, tmp_path / "single", True)))
    texts_a, texts_b = reference.view_texts(np.arange(2 * PER_DEVICE))
    with torch.no_grad():
        embeddings = reference.embed_texts(texts_a + texts_b)
        view_a, view_b = embeddings.chunk(2)
        loss = reference.accelerator.unwrap_model(reference.model).loss
        global_loss = loss(view_a, view_b).item()
        per_rank_loss = np.mean([loss(view_a[s], view_b[s]).item() for s in (slice(0, 4), slice(4, 8))])
    assert abs(global_loss - per_rank_loss) > 1e-2  # the flag must make a visible difference
    assert ranks[0]["losses"][0] == pytest.approx(global_loss, rel=1e-4)
    assert local_state["log_history"][0]["loss"] == pytest.approx(per_rank_loss, rel=1e-4)
