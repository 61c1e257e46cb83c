"""data_prep/: one launcher (`prepare.py FORMAT`) and a thin `prepare_FORMAT.py` per source, as documented."""

import importlib.util
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

import reaemb_trl.cli
from reaemb_trl.data import PreparedDataset

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_PREP = REPO_ROOT / "data_prep"
SCRIPTS = sorted(DATA_PREP.glob("prepare_*.py"))


@pytest.fixture
def launched(monkeypatch):
    """The argv each launcher hands `reaemb-trl`, with data_prep/prepare.py importable as the scripts import it."""
    calls = []
    monkeypatch.setattr(reaemb_trl.cli, "main", lambda argv: calls.append(argv) or 0)
    spec = importlib.util.spec_from_file_location("prepare", DATA_PREP / "prepare.py")
    launcher = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launcher)
    monkeypatch.setitem(sys.modules, "prepare", launcher)
    return launcher, calls


def run_as_main(monkeypatch, script, *args):
    monkeypatch.setattr(sys, "argv", [str(script), *args])
    with pytest.raises(SystemExit) as exited:
        runpy.run_path(str(script), run_name="__main__")
    return exited.value.code


def test_each_source_script_is_the_launcher_with_its_format(launched, monkeypatch):
    launcher, calls = launched
    formats = [script.stem.removeprefix("prepare_") for script in SCRIPTS]
    for script, source_format in zip(SCRIPTS, formats):
        assert run_as_main(monkeypatch, script, "--output", "out", "--min-rating", "2") == 0
        assert calls.pop() == ["prepare", source_format, *launcher.DEFAULTS.get(source_format, []),
                               "--output", "out", "--min-rating", "2"]  # given options come last: they win
    assert run_as_main(monkeypatch, DATA_PREP / "prepare.py", "yelp", "--output", "out") == 0
    assert calls.pop() == ["prepare", "yelp", "--min-rating", "4", "--min-user-interactions", "5",
                           "--min-item-interactions", "3", "--output", "out"]
    assert set(launcher.DEFAULTS) <= set(formats)
    # data_prep/README.md's table names every script with its format.
    documented = re.findall(r"^\| `(prepare_\w+\.py)` \| `(\w+)` \|", (DATA_PREP / "README.md").read_text(), re.M)
    assert sorted(documented) == sorted((script.name, fmt) for script, fmt in zip(SCRIPTS, formats))


def test_the_launcher_prepares_the_bundled_sample(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, str(DATA_PREP / "prepare.py"), "seqjson", "--interactions", "bundled",
                           "--items", "bundled", "--output", "out"], cwd=tmp_path, env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert PreparedDataset.load(tmp_path / "out").num_items == 2420
