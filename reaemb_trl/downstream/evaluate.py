"""`evaluate`: one recommender on one prepared dataset (and optionally one embedding file) -> metrics JSON."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..data import PreparedDataset
from ..data.embedding_table import read_item_table
from ..io_utils import OutputGuard, sha256_file, write_json
from .metrics import GROUPS
from .trainer import SELECTION_METRIC, DownstreamConfig, DownstreamTrainer


def load_table(path: str | os.PathLike | None, dataset: PreparedDataset) -> np.ndarray | None:
    """The embedding file's table in any format `export` writes (or a plain .npy / parquet table from another tool),
    lined up with the dataset's items and checked against it: ids or row count, finite values, and the fingerprint
    of the dataset it was exported from (when the file records one), since two datasets can have the same size."""
    if path is None:
        return None
    return read_item_table(path, dataset.source_ids, dataset.sha256)[0]


def run_records(config: DownstreamConfig, dataset: PreparedDataset, table_path: str | os.PathLike | None,
                table: np.ndarray | None, protocols: Sequence[str] = ()) -> list[dict]:
    """Train once (checkpoint chosen under `config.protocol`), test under it and every protocol in `protocols`:
    one record per protocol, selection protocol first, each marked with `selection_protocol`.

    The records share the training run, so they share epochs, history and wall time.
    """
    start = time.perf_counter()
    trainer = DownstreamTrainer(config, dataset.sequences, dataset.num_items, table, protocols=protocols)
    result = trainer.fit()
    wall_time = time.perf_counter() - start
    inputs = {
        "data": str(dataset.path),
        "dataset_sha256": dataset.sha256,
        "embeddings_sha256": None if table_path is None else sha256_file(table_path),
    }
    return [{
        "recommender": config.recommender,
        "protocol": protocol,
        "selection_protocol": result.protocol,
        "seed": config.seed,
        "negative_seed": config.negative_seed,
        "embeddings": None if table_path is None else str(table_path),
        "trainable_table": config.trainable_table,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        f"best_valid_{SELECTION_METRIC}": result.best_valid_score,
        **{group: metrics["test"][group] for group in GROUPS},
        "group_sizes": result.group_sizes,
        "valid": metrics["valid"]["overall"],
        "wall_time_s": round(wall_time, 2),
        "inputs": inputs,
        "config": config.to_dict(),
        "history": result.history,
    } for protocol, metrics in result.by_protocol.items()]


def run_record(config: DownstreamConfig, dataset: PreparedDataset, table_path: str | os.PathLike | None,
               table: np.ndarray | None) -> dict:
    """Train and test once under `config.protocol`; the record is what `metrics.json` holds."""
    return run_records(config, dataset, table_path, table)[0]


def evaluate(data: str | os.PathLike, table_path: str | os.PathLike | None = None,
             config: DownstreamConfig | None = None, output: str | os.PathLike | None = None,
             overwrite: bool = False, **overrides) -> dict:
    """Train `config.recommender` on the prepared folder `data` (with the item table file `table_path`, or learned ID
    embeddings without one) and return (and write, atomically) its metrics;
    an existing `output` is replaced only with `overwrite`, and only if it is a metrics file this function wrote."""
    config = dataclasses.replace(config or DownstreamConfig(), **overrides)
    guard = None if output is None else OutputGuard(output, kind="file", marker=_is_metrics_file,
                                                     inputs=[data, table_path], overwrite=overwrite)  # before training
    with guard or contextlib.nullcontext():
        dataset = PreparedDataset.load(data)
        record = run_record(config, dataset, table_path, load_table(table_path, dataset))
        if guard is not None:
            write_json(guard.path, record)
    return record


def _is_metrics_file(path: Path) -> bool:
    """A metrics record `evaluate` wrote (what its --overwrite may replace)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(record, dict) and {"recommender", "protocol", "inputs", "overall"} <= set(record)
