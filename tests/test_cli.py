"""The `reaemb-trl` entry points: the usage, --version, and `python -m reaemb_trl`."""

import subprocess
import sys

from reaemb_trl import __version__
from reaemb_trl.cli import COMMANDS, main


def test_version_and_usage(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"reaemb-trl {__version__}"
    assert main([]) == 0
    usage = capsys.readouterr().out
    assert all(name in usage for name in COMMANDS) and "cooc-sft" in usage
    assert main(["nope"]) == 2


def test_python_dash_m_runs_the_cli():
    done = subprocess.run([sys.executable, "-m", "reaemb_trl", "--version"], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0 and done.stdout.strip() == f"reaemb-trl {__version__}"


def test_bad_input_exits_2_with_one_line_and_no_traceback(tmp_path, capsys):
    """argparse's code for a usage error, for every InputError a command raises."""
    assert main(["prepare", "seqjson", "--interactions", str(tmp_path / "missing.json"),
                 "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("reaemb-trl prepare: error: ") and "missing.json" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
