"""The miniature end-to-end pipeline: report written, killed in the middle of CRRL, resumed without redoing work."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
RUNS = ["id-only", "raw_backbone", "lrcl_no_thought", "lrcl", "lrcl_crrl"]


@pytest.fixture(scope="module")
def mini_recipe(tmp_path_factory):
    """A tiny Qwen2 decoder and the first 300 users of the bundled sample, with a few steps per stage."""
    from reaemb_trl.data import sample_dataset_files
    from reaemb_trl.testing import save_tiny_decoder

    root = tmp_path_factory.mktemp("pipeline")
    backbone = save_tiny_decoder(root / "backbone", arch="qwen2", hidden_size=64, num_layers=2)
    inter_path, item_path = sample_dataset_files()
    sequences = json.loads(Path(inter_path).read_text())
    items = json.loads(Path(item_path).read_text())
    users = dict(list(sequences.items())[:300])
    used = sorted({item for seq in users.values() for item in seq})
    (root / "inter.json").write_text(json.dumps(users))
    (root / "items.json").write_text(json.dumps({str(i): items[str(i)] for i in used}))
    stage_common = {"max_length": 64, "logging_steps": 1, "report_to": "none"}
    recipe = {
        "output_dir": str(root / "out"),
        "seed": 7,
        "backbone": str(backbone),
        "dataset": {"format": "seqjson", "interactions": str(root / "inter.json"), "items": str(root / "items.json"),
                    "options": {"cooc_window": 10}},
        "lrcl": {**stage_common, "max_steps": 4, "per_device_train_batch_size": 8, "eval_steps": 2,
                 "eval_items": 32, "save_steps": 2},
        "crrl": {**stage_common, "max_steps": 24, "num_generations": 4, "per_device_train_batch_size": 16,
                 "eval_items": 32, "save_steps": 2, "num_iterations": 1, "warmup_steps": 0},
        "export": {"batch_size": 32},
        "compare": {"recommenders": ["sasrec"], "seeds": 1, "protocol": "sampled",
                    "options": {"epochs": 2, "max_items": 20}},
    }
    path = root / "mini.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path, root / "out"


def _launch(recipe: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "reaemb_trl.cli", "pipeline", "--config", str(recipe)],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)


def test_pipeline_resumes_after_kill_in_crrl_and_writes_report(mini_recipe, tmp_path):
    recipe, out = mini_recipe
    first = _launch(recipe, tmp_path / "first.log")
    deadline = time.monotonic() + 600
    while not list((out / "crrl").glob("checkpoint-*/trainer_state.json")):  # written last: a complete checkpoint
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "CRRL never wrote a checkpoint"
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()

    state = json.loads((out / "pipeline_state.json").read_text())["stages"]
    assert state["lrcl"]["status"] == "done" and state["crrl"]["status"] == "running"
    assert "export_lrcl" not in state
    lrcl_mtime = (out / "lrcl" / "config.json").stat().st_mtime_ns
    checkpoints_before = {p.parent.name for p in (out / "crrl").glob("checkpoint-*/trainer_state.json")}

    second = _launch(recipe, tmp_path / "second.log")
    assert second.wait(timeout=900) == 0, (tmp_path / "second.log").read_text()[-3000:]
    log = (tmp_path / "second.log").read_text()

    # finished stages are skipped, the killed one resumes from the checkpoint it had written
    for stage in ("prepare", "raw_backbone", "lrcl_no_thought", "lrcl"):
        assert f"[pipeline] {stage}: done earlier with the same config, skipped" in log
    assert "[pipeline] crrl: resuming from checkpoint-" in log
    resumed_from = log.split("[pipeline] crrl: resuming from ")[1].split()[0]
    assert resumed_from in checkpoints_before
    assert (out / "lrcl" / "config.json").stat().st_mtime_ns == lrcl_mtime
    crrl_state = json.loads((out / "crrl" / "trainer_state.json").read_text())
    assert crrl_state["global_step"] == 24

    state = json.loads((out / "pipeline_state.json").read_text())["stages"]
    assert all(stage["status"] == "done" for stage in state.values())
    report = (out / "report.md").read_text()
    for run in RUNS:
        assert f"| {run} " in report or f"| **{run}" in report or f"| {run}|" in report, run
    assert "## Wall time per stage" in report and "| crrl |" in report
    assert (out / "compare" / "ndcg_by_group.png").stat().st_size > 1000

    # a third run does nothing but rewrite the report
    third = subprocess.run([sys.executable, "-m", "reaemb_trl.cli", "pipeline", "--config", str(recipe)],
                           capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert third.returncode == 0, third.stderr[-3000:]
    assert third.stderr.count("skipped") == len(state)  # progress is logged on stderr
    assert third.stdout == f"Report written to {out / 'report.md'}\n"  # stdout: the command's output only


def test_resume_ignores_a_checkpoint_the_kill_left_half_written(tmp_path):
    """One layout for both stages: OUTPUT/checkpoint-N with trainer_state.json written last."""
    from reaemb_trl.training_state import latest_checkpoint, resolve_resume

    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "checkpoint-2" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-10").mkdir()  # killed before trainer_state.json, which the trainer writes last
    (tmp_path / "checkpoint-10" / "thought_module.safetensors").write_text("")
    (tmp_path / "checkpoint-x").mkdir()
    (tmp_path / "checkpoint-x" / "trainer_state.json").write_text("{}")
    assert latest_checkpoint(tmp_path).name == "checkpoint-2"
    assert resolve_resume("latest", tmp_path) == str(tmp_path / "checkpoint-2")
    assert latest_checkpoint(tmp_path / "missing") is None


def test_dotted_overrides_and_dry_run_write_nothing(tmp_path, capsys):
    from reaemb_trl.cli import main as cli_main
    from reaemb_trl.pipeline import PipelineConfig
    from reaemb_trl.pipeline.cli import parse_overrides

    recipe = REPO / "recipes" / "quickstart_cpu.yaml"
    overrides = parse_overrides(["--lrcl.max_steps", "12", "--crrl.sigma", "0.05", "--compare.seeds", "2",
                                 "--seed", "3", "--compare.recommenders", "[sasrec, gru4rec]"])
    config = PipelineConfig.from_yaml(recipe, overrides=overrides)
    assert config.lrcl["max_steps"] == 12 and config.crrl["sigma"] == 0.05 and config.seed == 3
    assert config.compare.seeds == 2 and config.compare.recommenders == ["sasrec", "gru4rec"]
    assert config.lrcl["per_device_train_batch_size"] == PipelineConfig.from_yaml(recipe).lrcl[
        "per_device_train_batch_size"]  # untouched keys keep the recipe's values

    out = tmp_path / "planned"
    argv = ["pipeline", "--config", str(recipe), "--output", str(out), "--dry-run", "--lrcl.max_steps", "12"]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert "max_steps: 12" in printed and f"output_dir: {out}" in printed
    for stage in ("prepare", "raw_backbone", "lrcl_no_thought", "lrcl", "crrl", "export_raw_backbone",
                  "export_lrcl_no_thought", "export_lrcl", "compare"):
        assert f"[pipeline] {stage}: would be run" in printed
    assert not out.exists()

    # an unknown key is refused by name, like a wrong key in the recipe file; so is a malformed override
    assert cli_main(["pipeline", "--config", str(recipe), "--dry-run", "--lrcl.max_stepz", "3"]) == 2
    assert "unknown key(s) in `lrcl`: ['max_stepz']" in capsys.readouterr().err
    assert cli_main(["pipeline", "--config", str(recipe), "--dry-run", "--compare.seedz", "3"]) == 2
    assert "unknown key(s) ['seedz']" in capsys.readouterr().err
    assert cli_main(["pipeline", "--config", str(recipe), "--dry-run", "--lrcl.max_steps"]) == 2
    assert "--KEY VALUE" in capsys.readouterr().err


def test_the_bundled_sample_is_hashed_by_name_not_install_path(tmp_path, monkeypatch):
    """A second checkout or virtual environment (the sample at another path) and a changed memory budget must not
    re-run prepare and every stage after it."""
    import shutil

    from reaemb_trl.data import sample_dataset_files
    from reaemb_trl.pipeline import PipelineConfig, PipelineRunner
    from reaemb_trl.pipeline import runner as runner_module
    from reaemb_trl.pipeline.pipeline_config import DatasetSection

    def prepare_hash(options):
        config = PipelineConfig(output_dir=str(tmp_path / "out"), dataset=DatasetSection(options=options))
        planner = PipelineRunner(config, dry_run=True, log=lambda message: None)
        planner.run()
        return planner.hashes["prepare"]

    here = prepare_hash({})
    copies = tmp_path / "elsewhere"
    copies.mkdir()
    moved = tuple(Path(shutil.copy(path, copies)) for path in sample_dataset_files())
    monkeypatch.setattr(runner_module, "sample_dataset_files", lambda: moved)
    assert prepare_hash({}) == here
    assert prepare_hash({"max_memory": "1GiB"}) == here
    assert prepare_hash({"min_rating": 4}) != here
