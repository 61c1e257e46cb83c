"""SIGTERM and SIGINT unwind every subcommand: exit 130, a short message, no temporary folder left behind."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from reaemb_trl.embedder.loading import LoadingOptions


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_prepare_leaves_nothing_half_written(tmp_path, sig):
    # Large enough that reading takes seconds: the signal lands mid-prepare.
    users = {f"u{u}": [(u * 7 + k) % 5000 for k in range(40)] for u in range(60_000)}
    (tmp_path / "inter.json").write_text(json.dumps(users))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "reaemb_trl.cli", "prepare", "seqjson", "--interactions",
                                str(tmp_path / "inter.json"), "--output", str(tmp_path / "out")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               preexec_fn=_default_sigint)
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".out.") for p in tmp_path.iterdir()):  # the staging folder exists
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(sig)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert f"stopped by {sig.name}" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inter.json"]


def _default_sigint():
    # A shell runs background jobs with SIGINT ignored, and Python then installs no Ctrl-C handler: give the child
    # the default disposition, so the test sees what a user at a terminal gets.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _launch(argv, log):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "reaemb_trl.cli", *argv], stdout=log.open("w"),
                            stderr=subprocess.STDOUT, env=env, preexec_fn=_default_sigint)


def _wait_for(process, log, pattern, timeout=300):
    import re

    deadline = time.monotonic() + timeout
    while not re.search(pattern, log.read_text()):
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.05)


@pytest.fixture(scope="module")
def tiny_run_inputs(tmp_path_factory):
    from conftest import prepared_sample_subset

    from reaemb_trl.testing import save_tiny_decoder

    root = tmp_path_factory.mktemp("signals")
    return save_tiny_decoder(root / "backbone", arch="qwen2"), prepared_sample_subset(root, 200)


@pytest.mark.slow
def test_sigterm_in_training_checkpoints_the_step_and_the_resume_ends_like_a_straight_run(tiny_run_inputs, tmp_path):
    """LRCL and CRRL: a SIGTERM between steps writes a checkpoint of the last finished step and stops (exit 130, no
    final folder); resuming from it ends with the weights of an uninterrupted run."""
    from safetensors.torch import load_file

    backbone, data = tiny_run_inputs
    lrcl = ["lrcl", "--model_name_or_path", str(backbone), "--dataset_dir", str(data), "--max_length", "48",
            "--per_device_train_batch_size", "8", "--gradient_accumulation_steps", "1", "--max_steps", "60",
            "--eval_steps", "0", "--eval_items", "16", "--save_steps", "0", "--report_to", "none", "--seed", "3",
            "--learning_rate", "5e-3"]
    # the uninterrupted run alongside the stopped one: the two processes overlap their start-up
    straight = _launch([*lrcl, "--output_dir", str(tmp_path / "straight")], tmp_path / "straight.log")
    stopped = _launch([*lrcl, "--output_dir", str(tmp_path / "stopped")], tmp_path / "stopped.log")
    _wait_for(stopped, tmp_path / "stopped.log", r"LRCL:\s+\d+%.*\|\s*[1-9]\d*/60")
    stopped.send_signal(signal.SIGTERM)
    assert stopped.wait(timeout=300) == 130, (tmp_path / "stopped.log").read_text()[-3000:]
    checkpoints = sorted((tmp_path / "stopped").glob("checkpoint-*/trainer_state.json"))
    assert len(checkpoints) == 1 and not (tmp_path / "stopped" / "config.json").exists()
    assert "saved its checkpoint" in (tmp_path / "stopped.log").read_text()
    resumed = _launch([*lrcl, "--output_dir", str(tmp_path / "stopped"), "--resume_from_checkpoint", "latest"],
                      tmp_path / "resumed.log")
    assert straight.wait(timeout=600) == 0, (tmp_path / "straight.log").read_text()[-3000:]
    assert resumed.wait(timeout=600) == 0, (tmp_path / "resumed.log").read_text()[-3000:]
    for name in ("thought_module.safetensors", "adapter/adapter_model.safetensors"):
        expected, got = (load_file(str(tmp_path / run / name)) for run in ("straight", "stopped"))
        assert all(torch.equal(expected[k], got[k]) for k in expected), name

    crrl = ["crrl", "--lrcl_model_path", str(tmp_path / "straight"), "--dataset_dir", str(data),
            "--output_dir", str(tmp_path / "crrl"), "--num_generations", "2", "--per_device_train_batch_size", "8",
            "--max_steps", "40", "--eval_items", "16", "--save_strategy", "no", "--report_to", "none",
            "--use_cpu", "true", "--warmup_steps", "0", "--logging_steps", "1", "--disable_tqdm", "false"]
    straight = _launch([*crrl, "--output_dir", str(tmp_path / "crrl_straight")], tmp_path / "crrl_straight.log")
    stopped = _launch(crrl, tmp_path / "crrl.log")
    _wait_for(stopped, tmp_path / "crrl.log", r"\|\s*[1-9]\d*/40 \[")
    stopped.send_signal(signal.SIGTERM)
    assert stopped.wait(timeout=300) == 130, (tmp_path / "crrl.log").read_text()[-3000:]
    checkpoints = sorted((tmp_path / "crrl").glob("checkpoint-*/trainer_state.json"))
    assert len(checkpoints) == 1 and not (tmp_path / "crrl" / "crrl_metrics.json").exists()
    resumed = _launch([*crrl, "--resume_from_checkpoint", "latest"], tmp_path / "crrl_resumed.log")
    assert resumed.wait(timeout=600) == 0, (tmp_path / "crrl_resumed.log").read_text()[-3000:]
    assert json.loads((tmp_path / "crrl" / "trainer_state.json").read_text())["global_step"] == 40
    assert straight.wait(timeout=600) == 0, (tmp_path / "crrl_straight.log").read_text()[-3000:]
    expected, got = (load_file(str(tmp_path / run / "thought_module.safetensors")) for run in ("crrl_straight", "crrl"))
    assert all(torch.equal(expected[k], got[k]) for k in expected)


@pytest.mark.slow
def test_sigterm_during_export_leaves_no_table_behind(tiny_run_inputs, tmp_path):
    from reaemb_trl.embedder import LatentReasoningEmbedder

    backbone, data = tiny_run_inputs
    LatentReasoningEmbedder.from_backbone(backbone, LoadingOptions(max_length=48)).save_pretrained(tmp_path / "model")
    output = tmp_path / "items.safetensors"
    process = _launch(["export", "--model", str(tmp_path / "model"), "--data", str(data), "--output", str(output),
                       "--batch-size", "1"], tmp_path / "export.log")
    _wait_for(process, tmp_path / "export.log", r"encode:\s+\d+%.*\|\s*[1-9]\d*/")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 130, (tmp_path / "export.log").read_text()[-3000:]
    assert "stopped by SIGTERM" in (tmp_path / "export.log").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.log", "model"]
