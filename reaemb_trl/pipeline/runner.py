"""prepare -> LRCL (with and without thought) -> CRRL -> export -> compare -> report, resumable stage by stage.

A recipe's `extra_arms` adds opt-in baselines: `raw_mean` (a stage saving the untrained backbone with mean pooling
and its export) and `lrcl_cooc_sft` (a stage `cooc_sft` that runs `crrl.run_cooc_sft` on the `crrl` section from the
LRCL folder, its recipe `OUTPUT/recipes/cooc_sft.yaml` a CRRL recipe; its table is exported with LRCL's and CRRL's).
Without them the stages and their hashes are the same as before these arms existed.

Each training stage writes its recipe into `OUTPUT/recipes/` (so every stage of a pipeline run can be reproduced by
hand with `reaemb-trl lrcl --config OUTPUT/recipes/lrcl.yaml`) and calls the stage's library function (`lrcl.run`,
`crrl.run`, `export_item_tables`, `compare`) with the config object that recipe describes. The raw arms are built
with LRCL's loading options (`LRCLConfig.embedder_options`), so they differ from LRCL's starting model only in the
thought (and `raw_mean` in its pooling); the report reads the results `compare` returned. `pipeline_state.json`
records each stage's config hash: a re-run skips finished stages with the same hash, and a stage that was killed is
started again with `resume_from_checkpoint` set to its newest checkpoint, so it continues from there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import time
from pathlib import Path
from typing import Callable

import yaml

from ..data import PreparedDataset, prepare_dataset, sample_dataset_files
from ..data.prepare import BUNDLED
from ..data.sources import load_json_document
from ..errors import InputError
from ..io_utils import OutputGuard, SetAside, atomic_path, write_json
from ..training_state import latest_checkpoint
from .pipeline_config import EXTRA_ARMS, PipelineConfig, stage_hash
from .report import write_report

logger = logging.getLogger(__name__)

# Embedding tables compared downstream, in report order: run name -> stage folder that holds its embedder.
# The folders are the stages' names too. `raw_mean` and `lrcl_cooc_sft` run only when the recipe lists them in
# `extra_arms`.
TABLE_RUNS = {
    "raw_backbone": "raw_backbone",
    "raw_mean": "raw_mean",
    "lrcl_no_thought": "lrcl_no_thought",
    "lrcl": "lrcl",
    "lrcl_cooc_sft": "cooc_sft",
    "lrcl_crrl": "crrl",
}
# Export stages -> the runs whose tables each writes (those the recipe has). CRRL and the cooc SFT train only the
# thought module, so their folders share the LRCL backbone and prompts: one stage writes their tables from one pass 1
# per batch (`export_item_tables`).
EXPORT_STAGES = {
    "export_raw_backbone": ["raw_backbone"],
    "export_raw_mean": ["raw_mean"],
    "export_lrcl_no_thought": ["lrcl_no_thought"],
    "export_lrcl": ["lrcl", "lrcl_crrl", "lrcl_cooc_sft"],
}


def table_runs(config: PipelineConfig) -> list[str]:
    """The runs whose tables `config` compares, in report order: the default ones and its `extra_arms`."""
    return [run for run in TABLE_RUNS if run not in EXTRA_ARMS or run in config.extra_arms]



class PipelineState:
    """`pipeline_state.json`: per stage, its hash, status and wall time."""

    def __init__(self, path: Path):
        self.path = path
        self.stages: dict[str, dict] = _read_stages(path) if path.exists() else {}

    def get(self, name: str) -> dict | None:
        return self.stages.get(name)

    def mark(self, name: str, **fields) -> None:
        self.stages[name] = {**self.stages.get(name, {}), **fields}
        write_json(self.path, {"stages": self.stages})


class PipelineRunner:
    def __init__(self, config: PipelineConfig, log: Callable[[str], None] | None = None, dry_run: bool = False):
        """`dry_run`: log what each stage would do (skip, resume, start over, run) and write nothing. `log` receives
        each progress line (default: this module's logger at INFO)."""
        self.config = config
        self.dry_run = dry_run
        self.out = Path(config.output_dir)
        self.log = log or logger.info
        self.backbone = config.backbone  # a bundled name stays a name: the embedder resolves it
        self.interactions, self.items = self._resolve_dataset_files()
        # OUTPUT holds every stage's output: it may hold no input (a stage started over would delete it)
        local_backbone = self.backbone if Path(self.backbone).exists() else None
        self.guard = OutputGuard(self.out, kind="run", marker="pipeline_state.json", resume=True,
                                 inputs=[self.interactions, self.items, self.prepared, local_backbone])
        self.state: PipelineState | None = None
        self.hashes: dict[str, str] = {}
        self.compare_results: dict | None = None  # what `compare` returned, when this run ran it

    def run(self) -> Path | None:
        """Run every stage that needs to; returns report.md (None in a dry run). A real run holds OUTPUT's lock."""
        with contextlib.nullcontext() if self.dry_run else self.guard:
            return self._run_stages()

    def _run_stages(self) -> Path | None:
        self.state = PipelineState(self.out / "pipeline_state.json")
        data_dir = self.prepared if self.prepared is not None else self.out / "data"
        lrcl_settings = self.config.lrcl_settings(data_dir)
        no_thought_settings = self.config.lrcl_settings(data_dir, no_thought=True)
        self._stage("prepare", self._prepare_output(data_dir), self._prepare, settings=self._prepare_settings())
        runs = table_runs(self.config)
        raw_keys = _loading_keys(self.config.lrcl)
        self._stage("raw_backbone", self.out / "raw_backbone",
                    lambda out: self._save_raw_backbone(out, lrcl_settings, {}),
                    settings={"backbone": self.backbone, **raw_keys})
        if "raw_mean" in runs:
            mean_keys = {**raw_keys, "pooling": "mean"}
            self._stage("raw_mean", self.out / "raw_mean",
                        lambda out: self._save_raw_backbone(out, lrcl_settings, {"pooling": "mean"}),
                        settings={"backbone": self.backbone, **mean_keys})
        self._stage("lrcl_no_thought", self.out / "lrcl_no_thought",
                    lambda out: self._training_stage("lrcl", out, no_thought_settings),
                    settings=no_thought_settings, after=["prepare"])
        self._stage("lrcl", self.out / "lrcl", lambda out: self._training_stage("lrcl", out, lrcl_settings),
                    settings=lrcl_settings, after=["prepare"])
        crrl_settings = self.config.crrl_settings(self.out / "lrcl", data_dir)
        self._stage("crrl", self.out / "crrl", lambda out: self._training_stage("crrl", out, crrl_settings),
                    settings=crrl_settings, after=["prepare", "lrcl"])
        if "lrcl_cooc_sft" in runs:  # CRRL's recipe, its supervised control
            self._stage("cooc_sft", self.out / "cooc_sft",
                        lambda out: self._training_stage("cooc_sft", out, crrl_settings),
                        settings=crrl_settings, after=["prepare", "lrcl"])
        tables = {run: self.out / "tables" / f"{run}.safetensors" for run in runs}
        exports = {stage: [run for run in stage_runs if run in tables] for stage, stage_runs in EXPORT_STAGES.items()}
        exports = {stage: stage_runs for stage, stage_runs in exports.items() if stage_runs}
        for stage, stage_runs in exports.items():
            folders = [TABLE_RUNS[run] for run in stage_runs]
            self._stage(stage, tables[stage_runs[0]],
                        lambda out, stage_runs=stage_runs: self._export(stage_runs, tables, data_dir),
                        settings={"export": self.config.export}, after=["prepare", *folders])
        self._stage("compare", self.out / "compare", lambda out: self._compare(data_dir, tables, out),
                    settings={"compare": self.config.compare}, after=["prepare", *exports])
        if self.dry_run:
            return None
        results = self.compare_results
        if results is None:  # compare was done by an earlier run: the results it returned then, as it saved them
            results = load_json_document(self.out / "compare" / "results.json")
        report = write_report(self.out, self.config, self.state.stages, tables, results)
        self.log(f"[pipeline] report: {report}")
        return report

    # -- stage bookkeeping -------------------------------------------------------------------------------------
    def _stage(self, name: str, output: Path, run: Callable[[Path], None], settings: dict,
               after: list[str] = ()) -> None:
        digest = stage_hash(name, settings, [self.hashes[dep] for dep in after])
        self.hashes[name] = digest
        record = self.state.get(name)
        would = "would be " if self.dry_run else ""
        if record and record.get("hash") == digest and record.get("status") == "done" and output.exists():
            self.log(f"[pipeline] {name}: done earlier with the same config, {would}skipped")
            return
        changed = bool(record and record.get("hash") != digest and output.exists())
        checkpoint = latest_checkpoint(output) if record and record.get("hash") == digest else None
        if self.dry_run:
            action = ("started over (config changed)" if changed else
                      f"resumed from {checkpoint.name}" if checkpoint else "run")
            self.log(f"[pipeline] {name}: would be {action}")
            return
        if changed:
            self.log(f"[pipeline] {name}: config changed since the last run, starting over")
        self.log(f"[pipeline] {name}: " + (f"resuming from {checkpoint.name}" if checkpoint else "running"))
        self.state.mark(name, hash=digest, status="running", started=_now())
        start = time.perf_counter()
        # a changed stage's old output waits aside until the new one is written: a stage refused before that (a bad
        # setting) gets it back, with its record
        aside = SetAside(output) if changed else contextlib.nullcontext()
        try:
            with aside:
                run(output)
        finally:
            if changed and aside.restored:
                self.state.stages[name] = record
                self.state.mark(name)  # written back as it was
        self.state.mark(name, status="done", seconds=round(time.perf_counter() - start, 2), finished=_now())

    # -- stages ------------------------------------------------------------------------------------------------
    def _prepare_settings(self) -> dict:
        if self.prepared is not None:
            # the folder's own fingerprint: later stages re-run if its content changes, not only its path
            return {"prepared": str(self.prepared), "dataset_sha256": self.prepared_sha256}
        dataset = self.config.dataset
        # the bundled sample by its name, not by where the package is installed: another checkout or virtual
        # environment reuses the stages; the memory budget never changes the prepared data
        interactions = BUNDLED if dataset.interactions == BUNDLED else self.interactions
        items = BUNDLED if dataset.items == BUNDLED else self.items
        options = {key: value for key, value in dataset.options.items() if key != "max_memory"}
        return {"format": dataset.format, "interactions": interactions, "items": items, "options": options}

    def _prepare_output(self, data_dir: Path) -> Path:
        """With `dataset.prepared` the stage only records which folder it used: the user's folder is never the
        stage output, since a changed config deletes a stage's output."""
        return self.out / "prepared_dataset.json" if self.prepared is not None else data_dir

    def _prepare(self, output: Path) -> None:
        if self.prepared is not None:
            write_json(output, self._prepare_settings())
            return
        prepare_dataset(self.config.dataset.format, interactions=self.interactions, items=self.items,
                        output=output, overwrite=True, **self.config.dataset.options)

    def _save_raw_backbone(self, output: Path, lrcl_settings: dict, changes: dict) -> None:
        """The untrained backbone's embedder, built with the LRCL stage's loading options (dtype, attention, revision,
        LoRA, quantisation, ...) without the thought, and with `changes` (raw_mean: mean pooling)."""
        from ..embedder import LatentReasoningEmbedder
        from ..lrcl import LRCLConfig

        lrcl = LRCLConfig(**lrcl_settings, output_dir=str(self.out / "lrcl"))
        options = dataclasses.replace(lrcl.embedder_options(), use_thought=False, **changes)
        LatentReasoningEmbedder.from_backbone(lrcl.model_name_or_path, options).save_pretrained(output)

    def _training_stage(self, stage: str, output: Path, settings: dict) -> None:
        from ..crrl import CRRLConfig, run_cooc_sft
        from ..crrl import run as run_crrl
        from ..lrcl import LRCLConfig
        from ..lrcl import run as run_lrcl

        recipe = {**settings, "output_dir": str(output)}
        checkpoint = latest_checkpoint(output)
        if checkpoint is not None:  # left by a killed run of this same stage config
            recipe["resume_from_checkpoint"] = str(checkpoint)
        recipe_path = self.out / "recipes" / f"{output.name}.yaml"
        with atomic_path(recipe_path) as tmp:
            tmp.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
        config_class, run = {"lrcl": (LRCLConfig, run_lrcl), "crrl": (CRRLConfig, run_crrl),
                             "cooc_sft": (CRRLConfig, run_cooc_sft)}[stage]
        run(config_class(**recipe))  # the config the recipe file describes (PipelineConfig.check_stages built it)

    def _export(self, runs: list[str], tables: dict[str, Path], data_dir: Path) -> None:
        from ..embedder import LatentReasoningEmbedder
        from ..export import ExportOptions, default_device, export_item_tables

        folders = [self.out / TABLE_RUNS[run] for run in runs]
        embedders = [LatentReasoningEmbedder.from_pretrained(folder).to(default_device()) for folder in folders]
        options = ExportOptions(pca=self.config.export.pca, batch_size=self.config.export.batch_size, overwrite=True)
        export_item_tables(embedders, PreparedDataset.load(data_dir), [tables[run] for run in runs], options,
                           model_names=[str(folder) for folder in folders])

    def _compare(self, data_dir: Path, tables: dict[str, Path], output: Path) -> None:
        from ..downstream import DownstreamConfig, compare

        section = self.config.compare
        self.compare_results = compare(data_dir, tables, output, recommenders=section.recommenders, seeds=section.seeds,
                protocols=section.protocol_list(), id_only=True, config=DownstreamConfig(**section.options),
                overwrite=True)

    def _resolve_dataset_files(self) -> tuple[str | None, str | None]:
        dataset = self.config.dataset
        self.prepared = None if dataset.prepared is None else Path(dataset.prepared).resolve()
        if self.prepared is not None:
            self.prepared_sha256 = PreparedDataset.load(self.prepared).sha256  # a clear error before any training
            if not (self.prepared / "cooccurrence.npz").is_file():
                raise InputError(f"dataset.prepared: {self.prepared} has no cooccurrence.npz (CRRL needs it)")
            return None, None
        if dataset.interactions == BUNDLED:
            inter, items = sample_dataset_files()
            return str(inter), str(items) if dataset.items == BUNDLED else dataset.items
        for kind, path in (("interactions", dataset.interactions), ("items", dataset.items)):
            if path is not None and not Path(path).exists():
                raise InputError(f"dataset.{kind}: {path} does not exist (checked before any training starts)")
        return dataset.interactions, dataset.items


# The fields of a stage record that are read back (`_stage`, the report): their types, as the message words them.
_RECORD_FIELDS = {"hash": (str, "a string"), "status": (str, "a string"), "seconds": ((int, float), "a number"),
                  "started": (str, "a string"), "finished": (str, "a string")}


def _read_stages(path: Path) -> dict[str, dict]:
    """The stage records of `pipeline_state.json`, each checked: a damaged file is refused by name (not guessed at),
    with the way out."""
    # the state alone is not enough to delete: a stage folder left without its record is not replaced silently
    redo = f"delete {path.parent} (or this file and the stage folders beside it) to run every stage again"
    try:
        document = load_json_document(path)
    except InputError as err:
        raise InputError(f"{err}; {redo}") from None
    stages = document.get("stages") if isinstance(document, dict) else None
    if not isinstance(stages, dict):
        raise InputError(f"{path}: expected {{\"stages\": {{STAGE: RECORD, ...}}}}, got {_short(document)}; {redo}")
    for name, record in stages.items():
        if not isinstance(record, dict):
            raise InputError(f"{path}: stage {name!r}: expected a record (a mapping), got {_short(record)}; {redo}")
        for key, (kind, wording) in _RECORD_FIELDS.items():
            if key in record and (not isinstance(record[key], kind) or isinstance(record[key], bool)):
                raise InputError(f"{path}: stage {name!r}: {key} must be {wording}, got {_short(record[key])}; "
                                 f"{redo}")
    return stages


def _short(value) -> str:
    """A JSON value as a message quotes it: at most 60 characters."""
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _loading_keys(lrcl: dict) -> dict:
    """The recipe's LRCL keys that are loading options, as the raw arms' stage settings: the raw tables are built
    with them, so a change re-runs those stages (keys left unset keep the hash of recipes that never set them)."""
    from ..embedder.loading import LoadingOptions

    names = [f.name for f in dataclasses.fields(LoadingOptions)]
    return {key: lrcl[key] for key in names if lrcl.get(key) is not None}


def _now() -> str:
    return dt.datetime.now().isoformat(timespec="seconds")
