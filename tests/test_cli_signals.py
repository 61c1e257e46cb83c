"""SIGTERM and SIGINT unwind every subcommand: exit 130, a short message, no temporary folder left behind."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_prepare_leaves_nothing_half_written(tmp_path, sig):
    # Large enough that reading takes seconds: the signal lands mid-prepare.
    users = {f"u{u}": [(u * 7 + k) % 5000 for k in range(40)] for u in range(60_000)}
    (tmp_path / "inter.json").write_text(json.dumps(users))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "reaemb_trl.cli", "prepare", "seqjson", "--interactions",
                                str(tmp_path / "inter.json"), "--output", str(tmp_path / "out")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
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
