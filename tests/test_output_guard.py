"""No command destroys what it did not write (issue 21): the output guard, and the seven ways data was lost.

1. the pipeline deleted a stage's output before checking the new config (`test_pipeline_*`);
2. export wrote over whatever --output named (`test_export_*`);
3. evaluate wrote over its inputs (`test_evaluate_*`);
4. lrcl and crrl wrote into their input folders (`test_lrcl_*`, `test_crrl_*`);
5. a SIGTERM during an --overwrite swap half-deleted the old folder (`test_sigterm_during_an_overwrite_swap_*`);
6. two runs on one output (`test_a_second_*`);
7. what a kill -9 or a stopped script left behind (`test_a_rerun_removes_*`, `test_sigterm_stops_a_library_call_*`).
The property tests draw input / output layouts, symlinks included, and check that no input byte ever changes.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reaemb_trl.cli import main as cli_main
from reaemb_trl.data import PreparedDataset, prepare_dataset, save_embedding_table
from reaemb_trl.embedder.loading import LoadingOptions
from reaemb_trl.errors import InputError
from reaemb_trl.io_utils import OWNER_MARKER, OutputGuard, SetAside
from reaemb_trl.pipeline import PipelineConfig, PipelineRunner
from reaemb_trl.pipeline.pipeline_config import DatasetSection

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under `root`, symlinks not followed: a file's sha256, a link's target, or a folder."""
    entries = {}
    for folder, names, files in os.walk(root):
        for name in names + files:
            path = Path(folder, name)
            key = str(path.relative_to(root))
            if path.is_symlink():
                entries[key] = ("link", os.readlink(path))
            elif path.is_dir():
                entries[key] = ("dir",)
            else:
                entries[key] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
    return entries


def write_sequences(path: Path, num_users: int = 40, length: int = 6) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({f"u{u}": [(u * 7 + k) % 23 + 1 for k in range(length)] for u in range(num_users)}))
    return path


def write_items(path: Path) -> Path:
    path.write_text(json.dumps({str(i): {"title": f"item {i}"} for i in range(1, 24)}))
    return path


def leftovers(root: Path) -> list[str]:
    """Scratch folders and lock files this toolkit would have left under `root`."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if ".reaemb_trl." in p.name)


# -------------------------------------------------------------------------------------------- 1. the pipeline
def test_pipeline_refuses_an_output_that_holds_its_inputs_before_deleting_anything(tmp_path):
    """The dataset's files inside OUTPUT/data and a changed dataset.options: the prepare stage used to delete the
    folder, with the user's files in it, before anything else."""
    out = tmp_path / "out"
    inter, items = write_sequences(out / "data" / "inter.json"), write_items(out / "data" / "item.json")
    (out / "data" / "dataset.json").write_text("{}")
    (out / "pipeline_state.json").write_text(json.dumps({"stages": {"prepare": {"hash": "earlier", "status": "done"}}}))
    before = snapshot(tmp_path)
    config = PipelineConfig(output_dir=str(out), dataset=DatasetSection(
        format="seqjson", interactions=str(inter), items=str(items), options={"cooc_window": 3}))
    with pytest.raises(InputError, match=r"out: the output holds the input .*inter\.json"):
        PipelineRunner(config, log=lambda message: None).run()
    assert snapshot(tmp_path) == before


def test_pipeline_keeps_a_stage_output_when_the_new_config_is_refused(small_dataset, tmp_path):
    """`--lrcl.max_steps ten`: the trained lrcl_no_thought folder used to be deleted before "ten" was parsed."""
    out = tmp_path / "out"

    def config(max_steps):
        return PipelineConfig(output_dir=str(out), dataset=DatasetSection(prepared=str(small_dataset)),
                              lrcl={"max_steps": max_steps, "report_to": "none"})

    planner = PipelineRunner(config(10), dry_run=True, log=lambda message: None)
    planner.run()
    trained = {"hash": "earlier", "status": "done", "seconds": 12.5}
    stages = {"prepare": {"hash": planner.hashes["prepare"], "status": "done"},
              "raw_backbone": {"hash": planner.hashes["raw_backbone"], "status": "done"},
              "lrcl_no_thought": trained}
    (out / "raw_backbone").mkdir(parents=True)
    (out / "prepared_dataset.json").write_text("{}")
    (out / "pipeline_state.json").write_text(json.dumps({"stages": stages}))
    (out / "lrcl_no_thought").mkdir()
    (out / "lrcl_no_thought" / "trainer_state.json").write_text('{"global_step": 10}')
    (out / "lrcl_no_thought" / "thought_module.safetensors").write_bytes(b"trained weights")
    before = snapshot(out / "lrcl_no_thought")

    with pytest.raises((InputError, SystemExit)):  # argparse: invalid int value 'ten'
        PipelineRunner(config("ten"), log=lambda message: None).run()
    assert snapshot(out / "lrcl_no_thought") == before
    assert json.loads((out / "pipeline_state.json").read_text())["stages"]["lrcl_no_thought"] == trained
    assert not leftovers(tmp_path)


# ------------------------------------------------------------------------------------------------ 2. export
@pytest.mark.parametrize("flag", [[], ["--overwrite"]])
@pytest.mark.parametrize("target", ["model/thought_module.safetensors", "data/items.jsonl"])
def test_export_never_writes_over_its_inputs(tiny_embedder_folder, small_dataset, tmp_path, capsys, target, flag):
    model = shutil.copytree(tiny_embedder_folder, tmp_path / "model")
    data = shutil.copytree(small_dataset, tmp_path / "data")
    before = snapshot(tmp_path)
    code = cli_main(["export", "--model", str(model), "--data", str(data), "--output", str(tmp_path / target),
                     "--no-progress", *flag])
    assert code == 2 and "lies inside the input" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_export_replaces_only_its_own_tables_and_only_with_overwrite(tiny_embedder_folder, small_dataset, tmp_path,
                                                                     capsys):
    notes = tmp_path / "notes.safetensors"
    notes.write_text("mine")
    argv = ["export", "--model", str(tiny_embedder_folder), "--data", str(small_dataset), "--no-progress"]
    assert cli_main([*argv, "--output", str(notes), "--overwrite"]) == 2
    assert "replaces only a file this toolkit wrote" in capsys.readouterr().err and notes.read_text() == "mine"

    table = tmp_path / "items.safetensors"
    assert cli_main([*argv, "--output", str(table)]) == 0
    written = table.read_bytes()
    assert cli_main([*argv, "--output", str(table)]) == 2
    assert "pass --overwrite to replace it" in capsys.readouterr().err and table.read_bytes() == written
    assert cli_main([*argv, "--output", str(table), "--overwrite"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "items.safetensors", "items.safetensors.ids.json", "items.safetensors.meta.json", "notes.safetensors"]


# ---------------------------------------------------------------------------------------------- 3. evaluate
def test_evaluate_never_writes_over_its_inputs(small_dataset, tmp_path, capsys):
    data = shutil.copytree(small_dataset, tmp_path / "data")
    dataset = PreparedDataset.load(data)
    table = np.random.default_rng(0).normal(size=(dataset.num_items + 1, 16)).astype(np.float32)
    table[0] = 0
    save_embedding_table(tmp_path / "items.safetensors", table, {"dataset_sha256": dataset.sha256})
    before = snapshot(tmp_path)
    fast = ["--epochs", "1", "--hidden_size", "16", "--show_progress", "false", "--protocol", "full"]
    for extra in (["--recommender", "pop", "--output", str(data / "dataset.json")],
                  ["--embeddings", str(tmp_path / "items.safetensors"), "--output", str(tmp_path / "items.safetensors"),
                   "--overwrite"]):
        assert cli_main(["evaluate", "--data", str(data), *fast, *extra]) == 2
        assert "the input" in capsys.readouterr().err
    assert snapshot(tmp_path) == before

    pop = ["evaluate", "--data", str(data), "--recommender", "pop", *fast, "--output", str(tmp_path / "m.json")]
    assert cli_main(pop) == 0
    assert cli_main(pop) == 2 and "pass --overwrite" in capsys.readouterr().err
    assert cli_main([*pop, "--overwrite"]) == 0  # a metrics file evaluate wrote


# ------------------------------------------------------------------------------------------- 4. lrcl, crrl
def _tiny_lrcl(backbone, data, output, **overrides):
    from reaemb_trl.lrcl import LRCLConfig

    return LRCLConfig(model_name_or_path=str(backbone), dataset_dir=str(data), output_dir=str(output), max_length=40,
                      per_device_train_batch_size=4, gradient_accumulation_steps=1, max_steps=1, eval_steps=0,
                      eval_items=4, save_steps=0, report_to="none", **overrides)


def test_lrcl_never_writes_into_its_input_folders(small_dataset, tmp_path):
    from reaemb_trl.lrcl import run
    from reaemb_trl.testing import save_tiny_decoder

    backbone = save_tiny_decoder(tmp_path / "backbone", arch="qwen2")
    data = shutil.copytree(small_dataset, tmp_path / "data")
    before = snapshot(tmp_path)
    for output, overwrite in ((backbone, False), (backbone, True), (data, True), (data / "lrcl", False)):
        with pytest.raises(InputError, match="the input"):
            run(_tiny_lrcl(backbone, data, output, overwrite_output_dir=overwrite))
    assert snapshot(tmp_path) == before


def test_crrl_never_writes_into_its_input_folders(small_dataset, tmp_path):
    from reaemb_trl.crrl import CRRLConfig
    from reaemb_trl.crrl import run as run_crrl
    from reaemb_trl.embedder import LatentReasoningEmbedder
    from reaemb_trl.testing import save_tiny_decoder

    backbone = save_tiny_decoder(tmp_path / "backbone", arch="qwen2")
    LatentReasoningEmbedder.from_backbone(str(backbone),
                                          LoadingOptions(max_length=40)).save_pretrained(tmp_path / "lrcl")
    data = shutil.copytree(small_dataset, tmp_path / "data")
    before = snapshot(tmp_path)
    for output in (tmp_path / "lrcl", data):
        with pytest.raises(InputError, match="the input"):
            run_crrl(CRRLConfig(lrcl_model_path=str(tmp_path / "lrcl"), dataset_dir=str(data),
                                output_dir=str(output), overwrite_output_dir=True, num_generations=2,
                                per_device_train_batch_size=4, max_steps=1, eval_items=0, save_strategy="no",
                                report_to="none", use_cpu=True))
    assert snapshot(tmp_path) == before


def test_a_changed_stage_survives_its_own_guard_clearing_the_set_aside_output(tmp_path):
    """The pipeline sets a changed stage's old run aside; the stage's own guard, once entered, removes that aside as
    scratch of the same output. The pipeline used to crash after the stage had finished (FileNotFoundError)."""
    stage = tmp_path / "crrl"
    stage.mkdir()
    (stage / OWNER_MARKER).touch()
    (stage / "trainer_state.json").write_text("old run")
    with SetAside(stage) as aside:
        with OutputGuard(stage, marker="trainer_state.json", kind="run", overwrite=True):
            (stage / "trainer_state.json").write_text("new run")
    assert (stage / "trainer_state.json").read_text() == "new run" and not aside.restored
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["crrl"] and not leftovers(tmp_path)


# ---------------------------------------------------------------------------------- 5. the swap, interrupted
def test_sigterm_during_an_overwrite_swap_leaves_the_old_or_the_new_folder_whole(tmp_path, monkeypatch):
    """The scheduler's SIGTERM lands while the old folder is being deleted (prepare; compare shares the code)."""
    inter = write_sequences(tmp_path / "inter.json")
    out = tmp_path / "out"
    prepare = ["prepare", "seqjson", "--interactions", str(inter), "--output", str(out), "--show_progress", "false"]
    assert cli_main(prepare) == 0
    old = snapshot(out)

    real_rmtree, fired = shutil.rmtree, []

    def rmtree_stopped_midway(path, *args, **kwargs):
        doomed = sorted(Path(path).rglob("inter.txt")) if Path(path).is_dir() else []
        if doomed and not fired:  # the old prepared folder (or the copy of it set aside): half of it goes, then...
            fired.append(path)
            doomed[0].unlink()
            os.kill(os.getpid(), signal.SIGTERM)
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", rmtree_stopped_midway)
    assert cli_main([*prepare, "--overwrite", "--cooc_window", "2"]) == 130
    monkeypatch.setattr(shutil, "rmtree", real_rmtree)
    assert fired
    now = snapshot(out)
    metadata = json.loads((out / "dataset.json").read_text()) if (out / "dataset.json").is_file() else {}
    whole_new = metadata.get("parameters", {}).get("cooc_window") == 2 and all(
        (out / name).is_file() and hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
        for name, digest in metadata["outputs"].items())
    assert now == old or whole_new

    assert cli_main([*prepare, "--overwrite"]) == 0  # a re-run removes what the stopped one left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inter.json", "out"]


def test_a_swap_killed_between_its_renames_gives_the_old_folder_back(tmp_path):
    """kill -9 after the old folder moved aside and before the new one moved in: the next guard moves it back."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "dataset.json").write_text("old")
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        import reaemb_trl.io_utils as io_utils
        real_replace = os.replace
        def replace(source, target):
            real_replace(source, target)
            if Path(target).parent.name.endswith(".reaemb_trl.old"):  # the old folder is aside
                os.kill(os.getpid(), signal.SIGKILL)
        io_utils.os.replace = replace
        with io_utils.atomic_output_dir({str(out)!r}, overwrite=True) as new:
            (new / "dataset.json").write_text("new")
    """)
    assert subprocess.run([sys.executable, "-c", script], env=ENV).returncode == -signal.SIGKILL
    assert not out.exists()

    with OutputGuard(out, marker="dataset.json", overwrite=True) as guard:
        assert guard.replaces
    assert (out / "dataset.json").read_text() == "old" and not leftovers(tmp_path)


# ------------------------------------------------------------------------------------ 6. two runs, one output
def test_a_second_prepare_on_the_same_output_is_refused_naming_the_first(tmp_path, capsys):
    big = write_sequences(tmp_path / "big.json", num_users=30_000, length=30)
    small = write_sequences(tmp_path / "small.json")
    out = tmp_path / "out"
    first = subprocess.Popen([sys.executable, "-m", "reaemb_trl.cli", "prepare", "seqjson", "--interactions", str(big),
                              "--output", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".out.") for p in tmp_path.iterdir()):  # the first one is under way
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    code = cli_main(["prepare", "seqjson", "--interactions", str(small), "--output", str(out)])
    err = capsys.readouterr().err
    _, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err
    assert code == 2 and f"another run (pid {first.pid}) is writing this output" in err
    assert json.loads((out / "dataset.json").read_text())["counts"]["users"] == 30_000
    assert not leftovers(tmp_path)


def test_a_second_pipeline_on_the_same_output_is_refused_before_any_stage(small_dataset, tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from reaemb_trl.io_utils import OutputGuard
        with OutputGuard({str(out)!r}, kind="run", marker="pipeline_state.json", resume=True):
            print("held", flush=True)
            time.sleep(120)
    """)], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "held"
        config = PipelineConfig(output_dir=str(out), dataset=DatasetSection(prepared=str(small_dataset)))
        with pytest.raises(InputError, match=f"another run \\(pid {holder.pid}\\)"):
            PipelineRunner(config, log=lambda message: None).run()
        assert sorted(p.name for p in out.iterdir()) == [".reaemb_trl_output"]
    finally:
        holder.kill()
        holder.wait()


# ------------------------------------------------------------------------------- 7. what a killed run leaves
def test_a_rerun_removes_the_scratch_a_killed_export_left_and_nothing_else(tiny_embedder_folder, small_dataset,
                                                                          tmp_path):
    table = tmp_path / "items.safetensors"
    killed = textwrap.dedent(f"""
        import os, signal
        from reaemb_trl.io_utils import atomic_path
        with atomic_path({str(table)!r}) as tmp:  # an export's table, half written
            tmp.write_bytes(b"half a table")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    assert subprocess.run([sys.executable, "-c", killed], env=ENV).returncode == -signal.SIGKILL
    left = sorted(p.name for p in tmp_path.iterdir())
    assert len(left) == 1 and left[0].startswith(".items.safetensors.") and left[0].endswith(".tmp")
    # look-alikes this toolkit did not make: one without the marker, one named for another output
    (tmp_path / ".items.safetensors.mine.tmp").write_text("mine")
    (tmp_path / ".items.safetensors.abcd1234.reaemb_trl.tmp").mkdir()
    (tmp_path / ".items.safetensors.abcd1234.reaemb_trl.tmp" / "notes").write_text("mine")
    (tmp_path / ".other.abcd1234.reaemb_trl.tmp").mkdir()
    (tmp_path / ".other.abcd1234.reaemb_trl.tmp" / ".reaemb_trl_scratch").touch()

    assert cli_main(["export", "--model", str(tiny_embedder_folder), "--data", str(small_dataset), "--output",
                     str(table), "--no-progress"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".items.safetensors.abcd1234.reaemb_trl.tmp", ".items.safetensors.mine.tmp", ".other.abcd1234.reaemb_trl.tmp",
        "items.safetensors", "items.safetensors.ids.json", "items.safetensors.meta.json"]


def test_sigterm_stops_a_library_call_like_the_cli_and_leaves_nothing(tmp_path):
    """A script calling the Python API (as benchmarks do), stopped by a scheduler's SIGTERM."""
    big = write_sequences(tmp_path / "big.json", num_users=30_000, length=30)
    script = (f"from reaemb_trl.data import prepare_dataset\n"
              f"prepare_dataset('seqjson', {str(big)!r}, output={str(tmp_path / 'out')!r}, show_progress=False)\n")
    process = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".out.") for p in tmp_path.iterdir()):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode != 0 and "KeyboardInterrupt: SIGTERM" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.json"]


# ------------------------------------------------------------------------------------------ property tests
# A small tree with symlinks: the inputs, the outputs and the toolkit's own earlier outputs are drawn from it.
FILES = {"a/x.txt": "x", "a/b/y.txt": "y", "c/z.txt": "z", "w.txt": "w"}
LINKS = {"la": "a", "lb": "a/b", "lx": "a/x.txt", "lc": "c", "dangling": "gone"}
INPUTS = ["a", "a/x.txt", "a/b", "a/b/y.txt", "c", "c/z.txt", "w.txt", "la", "lb", "lx", "lc"]
OUTPUTS = [*INPUTS, "dangling", "new", "a/new", "la/new", "lb/new", "c/new", "lc/new", "new/deeper/out", "e", "le"]
MARKERS = {"folder": "dataset.json", "run": "trainer_state.json"}
OWNED_FILE = "written by reaemb_trl"


def _owned_file(path: Path) -> bool:
    return path.read_text().startswith(OWNED_FILE)


def _build(root: Path, owned_c: bool, owned_w: bool, empty_e: bool) -> None:
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    for name, target in LINKS.items():
        (root / name).symlink_to(root / target)
    if owned_c:  # an earlier output of this toolkit, of every kind
        (root / "c" / "dataset.json").write_text("earlier")
        (root / "c" / "trainer_state.json").write_text("earlier")
    if owned_w:
        (root / "w.txt").write_text(OWNED_FILE + " earlier")
    if empty_e:
        (root / "e").mkdir()
        (root / "le").symlink_to(root / "e")


def _write(guard) -> None:
    """What a command of each kind writes once its guard let it."""
    from reaemb_trl.io_utils import atomic_output_dir, atomic_path

    if guard.kind == "folder":
        with atomic_output_dir(guard.path, overwrite=guard.replaces) as folder:
            (folder / "dataset.json").write_text("new")
    elif guard.kind == "file":
        with atomic_path(guard.path) as tmp:
            tmp.write_text(OWNED_FILE + " new")
    else:
        (guard.path / "trainer_state.json").write_text("new")


def _real(root: Path, key: str) -> Path:
    """Where the entry `key` of a snapshot lives, its parent folders' symlinks resolved."""
    return (root / key).parent.resolve() / Path(key).name


@settings(max_examples=300, deadline=None)
@given(inputs=st.sets(st.sampled_from(INPUTS), max_size=3), output=st.sampled_from(OUTPUTS),
       kind=st.sampled_from(["folder", "file", "run"]), overwrite=st.booleans(), resume=st.booleans(),
       owned_c=st.booleans(), owned_w=st.booleans(), empty_e=st.booleans())
def test_no_input_byte_changes_whatever_the_layout(inputs, output, kind, overwrite, resume, owned_c, owned_w, empty_e):

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp).resolve()
        _build(root, owned_c, owned_w, empty_e)
        before = snapshot(root)
        target = (root / output).resolve()
        existed = target.is_file() or (target.is_dir() and any(target.iterdir()))
        try:
            guard = OutputGuard(root / output, kind=kind, marker=_owned_file if kind == "file" else MARKERS[kind],
                                inputs=[root / name for name in inputs], overwrite=overwrite, resume=resume)
            with guard:
                _write(guard)
            accepted = True
        except InputError:
            accepted = False
        after = snapshot(root)

        if not accepted:
            assert after == before
            return
        for name in inputs:  # no input byte changed (the output is none of them, and holds and lies in none)
            source = (root / name).resolve()
            assert source != target and source not in target.parents and target not in source.parents
        changed = {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
        for key in changed:  # only the output changed (and the folders made for it)
            real = _real(root, key)
            assert real == target or target in real.parents or (real in target.parents and key not in before), key
        if existed:  # only what this toolkit wrote is replaced or written into, and only when asked
            assert (owned_c and target == root / "c") or (owned_w and target == root / "w.txt")
            assert overwrite or kind == "run"
        assert not leftovers(root)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.sampled_from(["raw", "lraw"]), output=st.sampled_from(
           ["raw", "lraw", "raw/out", "lraw/out", "raw/inter.json", "lraw/item.json", "out", "prev", "foreign",
            "foreign/out", "lforeign"]),
       overwrite=st.booleans())
def test_prepare_never_changes_an_input_or_a_foreign_file(raw, output, overwrite):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp).resolve()
        inter, items = write_sequences(root / "raw" / "inter.json"), write_items(root / "raw" / "item.json")
        (root / "lraw").symlink_to(root / "raw")
        (root / "foreign").mkdir()
        (root / "foreign" / "thesis.tex").write_text("mine")
        (root / "lforeign").symlink_to(root / "foreign")
        prepare_dataset("seqjson", inter, items, output=root / "prev", show_progress=False)
        kept = {key: value for key, value in snapshot(root).items() if not key.startswith("prev")}
        try:
            prepare_dataset("seqjson", root / raw / "inter.json", root / raw / "item.json", output=root / output,
                            overwrite=overwrite, show_progress=False, cooc_window=2)
            written = (root / output / "dataset.json").read_text()
            assert json.loads(written)["parameters"]["cooc_window"] == 2
        except InputError:
            pass
        after = snapshot(root)
        assert {key: after.get(key) for key in kept if not key.startswith(output)} == {
            key: value for key, value in kept.items() if not key.startswith(output)}
        assert after["raw/inter.json"] == kept["raw/inter.json"] and after["raw/item.json"] == kept["raw/item.json"]
        assert after["foreign/thesis.tex"] == kept["foreign/thesis.tex"]
        assert not leftovers(root)
