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


def test_every_command_resolves_and_encode_and_convert_are_reachable(tmp_path, capsys):
    """Each COMMANDS entry names a real function; encode / convert reach their own parsers (their refusals, before
    any model or file is read) through the top-level CLI."""
    import importlib

    for target, _ in COMMANDS.values():
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function))
    assert main(["encode", "--model", str(tmp_path / "m"), "--output", str(tmp_path / "t")]) == 2
    assert "give --items FILE --format F, or --text TEXT" in capsys.readouterr().err
    assert main(["convert", "--table", str(tmp_path / "missing.npy"), "--data", str(tmp_path / "d"),
                 "--output", str(tmp_path / "t")]) == 2
    assert capsys.readouterr().err.count("\n") == 1  # one line, no traceback


def test_stage_progress_goes_to_stderr_and_follows_a_replaced_stderr(capsys):
    """A sub-command's progress lines (the package's INFO records) go to stderr, its output stays on stdout; the
    handler writes to sys.stderr as it is when a record comes, so a stream swapped after the first command works."""
    import logging

    import pytest

    with pytest.raises(SystemExit):
        main(["prepare", "--help"])
    assert "usage" in capsys.readouterr().out
    logging.getLogger("reaemb_trl.pipeline.runner").info("[pipeline] lrcl: running")
    assert capsys.readouterr() == ("", "[pipeline] lrcl: running\n")
    with pytest.raises(SystemExit):
        main(["prepare", "--help"])  # a second command adds no second handler: each line comes once
    capsys.readouterr()
    logging.getLogger("reaemb_trl.pipeline.runner").info("[pipeline] crrl: running")
    assert capsys.readouterr().err == "[pipeline] crrl: running\n"
