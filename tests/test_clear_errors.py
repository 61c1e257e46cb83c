"""Issue 21, "tracebacks instead of errors": each bad input or refused write below is a message naming the file, the
key or the value and what is wrong, exit code 2 (argparse's code for a usage error), and nothing half-written.

1. a damaged `pipeline_state.json`; 2. wrong-typed recipe values; 3. malformed dotted overrides; 4. `--dry-run`
checks every stage's whole config; 5. compare checks every recommender and protocol before it reads data or
trains; 6. read-only, symlinked and dangling outputs; 7. a full disk (tests/test_io_utils.py has the in-process
write tests).

The read-only and full-disk cases need writes that really fail for root, which ignores permission bits: they run the
command inside a private mount namespace (`unshare --mount --map-root-user`) on a read-only bind mount or a 64 KiB
tmpfs, and are skipped where the kernel allows no such namespace.
"""

import json
import os
import resource
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reaemb_trl.cli import main as cli_main
from reaemb_trl.errors import InputError

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "recipes" / "quickstart_cpu.yaml"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
NO_NAMESPACE = 97  # exit code of the shell wrapper when the mount namespace cannot be made


def run_cli(capsys, *argv) -> tuple[int, str]:
    code = cli_main([str(arg) for arg in argv])
    return code, capsys.readouterr().err


def recipe_with(tmp_path: Path, **changes) -> Path:
    """The quickstart recipe with `changes` ("lrcl.max_steps" style keys, or whole top-level values)."""
    recipe = yaml.safe_load(QUICKSTART.read_text())
    for dotted, value in changes.items():
        *sections, key = dotted.split("__")
        target = recipe
        for section in sections:
            target = target[section]
        target[key] = value
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def small_prepared(tmp_path: Path) -> Path:
    """A prepared folder of 40 users over 23 items (no item text: compare's id-only and pop runs need none)."""
    from reaemb_trl.data import prepare_dataset

    inter = tmp_path / "raw" / "inter.json"
    inter.parent.mkdir(parents=True)
    inter.write_text(json.dumps({f"u{u}": [(u * 7 + k) % 23 + 1 for k in range(6)] for u in range(40)}))
    with pytest.warns(UserWarning, match="no item file"):
        return prepare_dataset("seqjson", inter, output=tmp_path / "data", show_progress=False)


def in_namespace(script: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """`script` (sh) inside a private mount namespace as its root; skipped where none can be made."""
    done = subprocess.run(["unshare", "--mount", "--map-root-user", "sh", "-c", script], capture_output=True,
                          text=True, env=ENV, timeout=timeout, check=False)
    if done.returncode == NO_NAMESPACE or "unshare:" in done.stderr:
        pytest.skip(f"no private mount namespace here: {done.stderr.strip()[-200:]}")
    return done


# ------------------------------------------------------------------------------- 1. a damaged pipeline_state.json
@pytest.mark.parametrize("content, problem", [
    ('{"stages": {"prepare": {"hash": "ab', "line 1: malformed JSON"),  # truncated by a full disk or a kill
    ('{"stages": []}', 'expected {"stages": {STAGE: RECORD, ...}}, got {"stages": []}'),
    ("[1, 2]", 'expected {"stages": {STAGE: RECORD, ...}}, got [1, 2]'),
    ('{"stages": {"prepare": "done"}}', "stage 'prepare': expected a record (a mapping), got \"done\""),
    ('{"stages": {"prepare": {"hash": 5, "status": "done"}}}', "stage 'prepare': hash must be a string, got 5"),
    ('{"stages": {"lrcl": {"seconds": "12"}}}', "stage 'lrcl': seconds must be a number, got \"12\""),
])
def test_a_damaged_pipeline_state_is_refused_by_name_and_left_as_it_is(tmp_path, capsys, content, problem):
    out = tmp_path / "run"
    out.mkdir()
    state = out / "pipeline_state.json"
    state.write_text(content)
    for dry_run in (["--dry-run"], []):
        code, err = run_cli(capsys, "pipeline", "--config", QUICKSTART, "--output", out, *dry_run)
        assert code == 2, err
        assert f"{state}" in err and problem in err, err
        assert f"delete {out} (or this file and the stage folders beside it) to run every stage again" in err
        assert "Traceback" not in err
    assert state.read_text() == content
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["pipeline_state.json"]


# ------------------------------------------------------------------------------------ 2. wrong-typed recipe values
@pytest.mark.parametrize("changes, message", [
    ({"lrcl__max_steps": "ten"}, "`lrcl`: LRCL config: max_steps must be an integer, got 'ten'"),
    ({"compare__seeds": [1]}, "compare: seeds must be an integer, got [1]"),
    ({"dataset": 5}, "`dataset` must be a mapping"),
    ({"lrcl": 5}, "lrcl must be a mapping of LRCLConfig keys"),
    ({"crrl": {1: 2}}, "crrl: keys must be names, got [1]"),
    ({"backbone": 5}, "pipeline: backbone must be a string, got 5"),
    ({"dataset__interactions": 5}, "dataset: interactions must be a string, got 5"),
    ({"dataset__prepared": ["x"]}, "dataset: prepared must be a string or null, got ['x']"),
    ({"dataset__format": "seqjsn"}, "dataset: format: unknown format 'seqjsn'"),
    ({"dataset__options": "cooc_window=3"}, "dataset.options must be a mapping of prepare options"),
    ({"dataset__options": {"cooc_windw": 3}}, "dataset.options: unknown prepare option(s) ['cooc_windw']"),
    ({"dataset__options": {"cooc_window": 0}}, "dataset.options: --cooc-window must be at least 1"),
    ({"compare__recommenders": "sasrec"}, "compare: recommenders must be a non-empty list of names"),
    ({"compare__recommenders": ["sasrec", "sasrek"]}, "compare: recommender 'sasrek' is unknown"),
    ({"crrl__rewards": ["cooc_softmax", "cooc_ndgc"]}, "`crrl`: unknown reward 'cooc_ndgc'"),
    ({"crrl__eval_reward": "ndcg"}, "`crrl`: unknown reward 'ndcg'"),
])
def test_wrong_typed_recipe_values_are_refused_at_load_naming_section_and_key(tmp_path, changes, message):
    from reaemb_trl.pipeline import PipelineConfig

    recipe = recipe_with(tmp_path, **changes)
    with pytest.raises(InputError) as refused:
        PipelineConfig.from_yaml(recipe, output_dir=str(tmp_path / "out"))
    assert str(refused.value).startswith(f"{recipe}: ") and message in str(refused.value), str(refused.value)


def test_a_wrong_typed_value_stops_a_real_run_before_any_stage(tmp_path, capsys):
    """The typo of the issue (`--lrcl.max_steps ten`) on a finished run: refused, and no stage folder is touched."""
    out = tmp_path / "run"
    (out / "lrcl").mkdir(parents=True)
    (out / "lrcl" / "config.json").write_text("trained")
    (out / "pipeline_state.json").write_text(json.dumps({"stages": {"lrcl": {"hash": "x", "status": "done"}}}))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, err = run_cli(capsys, "pipeline", "--config", QUICKSTART, "--output", out, "--lrcl.max_steps", "ten")
    assert code == 2 and "max_steps must be an integer, got 'ten'" in err, err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


# -------------------------------------------------------------------------------- 3. malformed dotted overrides
@pytest.mark.parametrize("extra, message", [
    (["--lrcl.max_steps"], "--lrcl.max_steps: overrides are `--KEY VALUE` or `--SECTION.KEY VALUE` pairs"),
    (["--lrcl.max_steps", "--seed", "3"], "--lrcl.max_steps: overrides are `--KEY VALUE`"),
    (["lrcl.max_steps", "3"], "lrcl.max_steps: overrides are `--KEY VALUE`"),
    (["--lrcl..x", "1"], "--lrcl..x: an empty name in the override"),
    (["--lrcl.", "1"], "--lrcl.: an empty name in the override"),
    (["--nosuch.key", "1"], "--nosuch.key: `nosuch` is not a section of the recipe (sections: compare, crrl, "
                            "dataset, export, lrcl)"),
    (["--seed.x", "1"], "--seed.x: `seed` is not a section of the recipe"),
    (["--dataset.format.x", "1"], "--dataset.format.x: `format` is not a section of dataset (sections: options)"),
    (["--lrcl.max_steps", "[1"], "--lrcl.max_steps '[1': not a value a recipe could hold"),
    (["--lrcl.max_steps", "3", "--lrcl.max_steps=4"], "--lrcl.max_steps is given twice"),
])
def test_a_malformed_override_is_refused_by_name(tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    code, err = run_cli(capsys, "pipeline", "--config", QUICKSTART, "--output", out, *extra)
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not out.exists()


def test_an_override_may_be_written_key_equals_value(tmp_path):
    from reaemb_trl.pipeline import PipelineConfig
    from reaemb_trl.pipeline.cli import parse_overrides

    overrides = parse_overrides(["--lrcl.max_steps=7", "--compare.options.epochs", "2", "--seed=-0"])
    assert overrides == {"lrcl.max_steps": 7, "compare.options.epochs": 2, "seed": 0}
    config = PipelineConfig.from_yaml(QUICKSTART, overrides=overrides)
    assert config.lrcl["max_steps"] == 7 and config.compare.options["epochs"] == 2


# ----------------------------------------------------------------- 4. --dry-run checks every stage's whole config
@pytest.mark.parametrize("override, message", [
    (["--lrcl.learning_rate", "-1"], "`lrcl`: LRCL config: learning_rate must be >= 0, got -1"),
    (["--crrl.rewards", "[cooc_softmax, cooc_ndgc]"], "`crrl`: unknown reward 'cooc_ndgc'"),
    (["--export.pca", "0"], "export: pca must be >= 1, got 0"),
    (["--compare.recommenders", "[sasrec, gru4rek]"], "compare: recommender 'gru4rek' is unknown"),
    (["--compare.options.dropout", "1.5"], "dropout must be in [0, 1), got 1.5"),
])
def test_dry_run_reports_a_bad_value_of_every_section_and_writes_nothing(tmp_path, capsys, override, message):
    out = tmp_path / "planned"
    code, err = run_cli(capsys, "pipeline", "--config", QUICKSTART, "--output", out, "--dry-run", *override)
    assert code == 2 and message in err, err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == []


# ------------------------------------------------- 5. compare checks every recommender and protocol before training
@pytest.mark.parametrize("flags, message", [
    (["--recommenders", "sasrec", "sasrek"], "compare: recommender 'sasrek' is unknown (choose from "),
    (["--recommenders", "pop", "--protocols", "sampled", "fulll"], "compare: protocol 'fulll' is unknown"),
    (["--seeds", "0"], "compare: seeds must be >= 1, got 0"),
])
def test_compare_checks_every_run_before_reading_data_or_training(tmp_path, capsys, flags, message):
    """The data folder does not exist: the bad name is reported first, so no data was read and nothing trained."""
    code, err = run_cli(capsys, "compare", "--data", tmp_path / "missing", "--output", tmp_path / "out", *flags)
    assert code == 2 and message in err, err
    assert not (tmp_path / "out").exists()


def test_compare_refuses_a_name_given_as_a_plain_string(tmp_path):
    from reaemb_trl.downstream import compare

    with pytest.raises(InputError, match="recommenders must be a non-empty list of names, got 'sasrec'"):
        compare(tmp_path / "missing", output=tmp_path / "out", recommenders="sasrec")
    with pytest.raises(InputError, match="protocols must be a non-empty list of names, got"):
        compare(tmp_path / "missing", output=tmp_path / "out", protocols=[])


# ------------------------------------------------------------- 6. read-only, symlinked and dangling output paths
@pytest.mark.parametrize("command", ["compare", "pipeline"])
def test_an_output_under_a_file_or_through_a_symlink_is_refused(tmp_path, capsys, command):
    """An output below a regular file fails for root too (no chmod involved); a symlinked output would be written
    where the link points, a dangling one where it points once created: both refused by name, nothing written."""
    data = small_prepared(tmp_path) if command == "compare" else None
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone" / "deeper")
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = (["compare", "--data", data, "--recommenders", "pop", "--seeds", "1", "--id_only", "true"]
            if command == "compare" else ["pipeline", "--config", QUICKSTART])
    cases = {"notes.txt/out": f"cannot write here, {tmp_path / 'notes.txt'} is a file",
             "link": f"the output path is a symbolic link (to {tmp_path / 'elsewhere'}); name the real path",
             "dangling": f"the output path is a symbolic link (to {tmp_path / 'gone' / 'deeper'}, which does not "
                         "exist)"}
    for output, message in cases.items():
        code, err = run_cli(capsys, *argv, "--output", tmp_path / output)
        assert code == 2 and f"{tmp_path / output}: {message}" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not any((tmp_path / "elsewhere").iterdir()) and (tmp_path / "notes.txt").read_text() == "mine"


def test_a_read_only_output_folder_is_refused_before_any_work(tmp_path):
    """An earlier compare output and an earlier pipeline run on a read-only bind mount (the folder itself read-only,
    its parent writable): each command is refused up front with exit 2, and both folders keep every byte."""
    data = small_prepared(tmp_path)
    earlier_compare, earlier_run = tmp_path / "compare_out", tmp_path / "run"
    earlier_compare.mkdir()
    (earlier_compare / "results.json").write_text("{}")
    earlier_run.mkdir()
    (earlier_run / "pipeline_state.json").write_text('{"stages": {}}')
    commands = {"compare": ["compare", "--data", str(data), "--output", str(earlier_compare), "--overwrite",
                            "--recommenders", "pop", "--seeds", "1", "--id_only", "true"],
                "pipeline": ["pipeline", "--config", str(QUICKSTART), "--output", str(earlier_run)]}
    # one interpreter for both commands: the imports are the slow part
    script = ("from reaemb_trl.cli import main\n"
              f"for name, argv in {commands!r}.items(): print(f'{{name}}={{main(argv)}}', flush=True)")
    done = in_namespace(
        f"mount --bind -o ro {earlier_compare} {earlier_compare} && mount --bind -o ro {earlier_run} {earlier_run} "
        f"|| exit {NO_NAMESPACE}; {shlex.quote(sys.executable)} -c {shlex.quote(script)}")
    assert "compare=2" in done.stdout and "pipeline=2" in done.stdout, done.stdout + done.stderr[-3000:]
    assert f"{earlier_compare}: cannot write here, {earlier_compare} is not writable" in done.stderr
    assert f"{earlier_run}: cannot write here, {earlier_run} is not writable" in done.stderr
    assert "Traceback" not in done.stderr
    assert [p.name for p in earlier_compare.iterdir()] == ["results.json"]
    assert [p.name for p in earlier_run.iterdir()] == ["pipeline_state.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compare_out", "data", "raw", "run"]


# --------------------------------------------------------------------------------------------- 7. a full disk
def test_prepare_on_a_full_disk_exits_2_and_leaves_nothing(tmp_path):
    """A real ENOSPC: the output lies on a 64 KiB tmpfs that the 2.4 MB item file cannot fit. The listing of the
    tmpfs is taken inside the namespace, before the tmpfs goes away with it."""
    disk = tmp_path / "disk"
    disk.mkdir()
    prepare = f"{shlex.quote(sys.executable)} -m reaemb_trl.cli prepare seqjson --interactions bundled --items bundled"
    done = in_namespace(f"mount -t tmpfs -o size=64k tmpfs {disk} || exit {NO_NAMESPACE}; "
                        f"{prepare} --output {disk / 'office'} --show_progress false; echo rc=$?; ls -A {disk}")
    assert done.stdout.split() == ["rc=2"], done.stdout + done.stderr[-3000:]  # and `ls` listed nothing
    assert f"{disk / 'office'}: cannot write it: No space left on device" in done.stderr, done.stderr[-3000:]
    assert "Traceback" not in done.stderr


def test_prepare_past_a_file_size_limit_exits_2_and_leaves_nothing(tmp_path):
    """The same refusal without any namespace: RLIMIT_FSIZE makes the kernel refuse the write (EFBIG; Python ignores
    SIGXFSZ, so the write fails instead of killing the process)."""
    limit = 64 * 1024

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    argv = ["prepare", "seqjson", "--interactions", "bundled", "--items", "bundled", "--output",
            str(tmp_path / "office"), "--show_progress", "false"]
    done = subprocess.run([sys.executable, "-m", "reaemb_trl.cli", *argv], capture_output=True, text=True, env=ENV,
                          preexec_fn=limit_file_size, timeout=600, check=False)
    assert done.returncode == 2, done.stderr[-3000:]
    assert f"{tmp_path / 'office'}: cannot write it: File too large" in done.stderr and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_prepare_options_of_the_wrong_type_are_refused_before_any_file_is_read(tmp_path):
    """`cooc_window: ten` used to be a TypeError traceback, `min_rating: x` an error only after reading the data."""
    from reaemb_trl.data.prepare import PrepareOptions

    with pytest.raises(InputError, match="prepare options: cooc_window must be an integer"):
        PrepareOptions(cooc_window="ten")
    with pytest.raises(InputError, match="prepare options: min_rating must be"):
        PrepareOptions(min_rating="x")
    assert PrepareOptions(min_rating=4, cooc_window=3).min_rating == 4.0
