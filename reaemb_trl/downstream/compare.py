"""`compare`: every (recommender, table, seed) combination, trained once and tested under every protocol
-> results.md, results.json and plots."""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from ..data import PreparedDataset
from ..errors import InputError
from ..io_utils import OutputGuard, atomic_output_dir, sha256_file, write_json
from ..validation import check_number
from .config import DownstreamConfig
from .evaluate import load_table, run_records
from .metrics import GROUPS
from .plots import plot_ndcg_by_group, plot_projection
from .protocol import check_protocols
from .registry import get_recommender

ID_ONLY = "id-only"
TABLE_COLUMNS = [("overall", "HR@10"), ("overall", "NDCG@10"), ("tail_items", "NDCG@10"),
                 ("popular_items", "NDCG@10"), ("short_users", "NDCG@10"), ("long_users", "NDCG@10")]


def _mean_std(values: Sequence[float | None]) -> dict[str, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None}
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}


def summarize_runs(records: list[dict]) -> dict[tuple[str, str, str], dict]:
    """Mean and sample std over seeds of every test metric, per (protocol, recommender, run)."""
    keyed: dict[tuple[str, str, str], list[dict]] = {}
    for record in records:
        keyed.setdefault((record["protocol"], record["recommender"], record["run"]), []).append(record)
    summary = {}
    for (protocol, recommender, run), group_records in keyed.items():
        metrics = {group: {name: _mean_std([r[group][name] for r in group_records]) for name in group_records[0][group]}
                   for group in GROUPS}
        summary[(protocol, recommender, run)] = {
            "protocol": protocol, "recommender": recommender, "run": run, "seeds": [r["seed"] for r in group_records],
            "metrics": metrics, "epochs_run": _mean_std([r["epochs_run"] for r in group_records]),
            "wall_time_s": _mean_std([r["wall_time_s"] for r in group_records]),
        }
    return summary


def markdown_table(summary: dict, group_sizes: dict[str, dict[str, int]],
                   selection_protocol: str | None = None) -> str:
    """One table per protocol; within each recommender the best mean of every column is bold."""
    lines = ["# Downstream comparison", "",
             "Test metrics from the best validation checkpoint (NDCG@10), mean ± std over seeds; "
             "best per recommender in **bold**. Wall time is per run (train + evaluation).", ""]
    if selection_protocol is not None and len({key[0] for key in summary}) > 1:
        lines += [(f"Each model was trained once: its checkpoint was chosen on validation NDCG@10 under the "
                   f"`{selection_protocol}` protocol, and every protocol's test metrics come from that checkpoint "
                   "(so the tables share epochs and wall time)."), ""]
    for protocol in sorted({key[0] for key in summary}):
        sizes = group_sizes[protocol]
        lines += [f"## Protocol: {protocol}", "",
                  "Users: " + ", ".join(f"{group.replace('_', ' ')} {count}" for group, count in sizes.items()), "",
                  "| recommender | table | " + " | ".join(f"{metric} {group.replace('_', ' ')}" if group != "overall"
                                                     else metric for group, metric in TABLE_COLUMNS)
                  + " | epochs | wall time / run (s) |",
                  "|" + "---|" * (len(TABLE_COLUMNS) + 4)]
        for recommender in sorted({key[1] for key in summary if key[0] == protocol}):
            rows = [row for key, row in summary.items() if key[:2] == (protocol, recommender)]
            best = {col: max((row["metrics"][col[0]][col[1]]["mean"] or float("-inf")) for row in rows)
                    for col in TABLE_COLUMNS}
            for row in rows:
                cells = []
                for col in TABLE_COLUMNS:
                    stat = row["metrics"][col[0]][col[1]]
                    if stat["mean"] is None:
                        cells.append("-")
                        continue
                    text = f"{stat['mean']:.4f} ± {stat['std']:.4f}"
                    cells.append(f"**{text}**" if len(rows) > 1 and stat["mean"] == best[col] else text)
                epochs, wall = row["epochs_run"], row["wall_time_s"]
                lines.append(f"| {recommender} | {row['run']} | " + " | ".join(cells)
                             + f" | {epochs['mean']:.1f} | {wall['mean']:.1f} ± {wall['std']:.1f} |")
        lines.append("")
    return "\n".join(lines)


def _check_runs(config: DownstreamConfig, recommenders: Sequence[str], seeds: int | Sequence[int],
                protocols: Sequence[str]) -> tuple[list[int], list[str]]:
    """(seeds, protocols) as lists, once every run's config has been built as the training loop will build it: an
    unknown recommender or protocol, or a bad seed, fails before the data is read and the first model trains."""
    for what, names in (("recommenders", recommenders), ("protocols", protocols)):
        if isinstance(names, str) or not names:
            raise InputError(f"compare: {what} must be a non-empty list of names, got {names!r}")
    if isinstance(seeds, (list, tuple, range)):
        seeds = list(seeds)
    else:  # a count
        seeds = list(range(check_number(seeds, "compare: seeds", "int", ">= 1")))
    if not seeds:
        raise InputError("compare needs at least one seed")
    try:
        protocols = check_protocols(protocols)
        for recommender, seed in itertools.product(recommenders, seeds):
            dataclasses.replace(config, recommender=recommender, protocol=protocols[0], seed=seed)
    except InputError as err:
        raise InputError(f"compare: {err}") from None
    return seeds, protocols


def _file_name(run: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", run)


def compare(data: str | os.PathLike, runs: Mapping[str, str | os.PathLike] | None = None,
            output: str | os.PathLike = "compare", recommenders: Sequence[str] = ("sasrec", "gru4rec"),
            seeds: int | Sequence[int] = 3, protocols: Sequence[str] = ("sampled",), id_only: bool = False,
            config: DownstreamConfig | None = None, overwrite: bool = False) -> dict:
    """Train every combination and write results.md, results.json, ndcg_by_group.png, projection_<run>.png.

    `runs` maps a name to an embedding file; `id_only` adds learned ID embeddings as a run of its own.
    Each (recommender, run, seed) is trained once: early stopping and the best checkpoint follow validation NDCG@10
    under the FIRST of `protocols`, then test metrics are read under every protocol listed from that checkpoint
    (one record per protocol, marked with `selection_protocol`).
    A recommender that uses no item table (the registry says so: pop) has one run of its own, named by its
    registry entry (pop: "popularity"); a deterministic one is trained with the first seed only.
    """
    config = config or DownstreamConfig()
    seeds, protocols = _check_runs(config, recommenders, seeds, protocols)
    entries = [get_recommender(name) for name in recommenders]
    reserved = ({ID_ONLY} | {entry.run_name for entry in entries if not entry.uses_table}) & set(runs or {})
    if reserved:
        raise InputError(f"run name(s) {sorted(reserved)} are reserved for the id-only run and the runs of "
                         "recommenders without a table; rename them")
    guard = OutputGuard(output, marker="results.json", inputs=[data, *(runs or {}).values()], overwrite=overwrite)
    dataset = PreparedDataset.load(data)
    tables = {name: load_table(path, dataset) for name, path in (runs or {}).items()}
    table_runs = ([ID_ONLY] if id_only or not tables else []) + list(tables)
    jobs = []
    for entry in entries:
        entry_runs = table_runs if entry.uses_table else [entry.run_name]
        entry_seeds = seeds[:1] if entry.deterministic else seeds
        jobs += [(entry.name, run, seed) for run in entry_runs for seed in entry_seeds]

    records = []
    with guard, atomic_output_dir(guard.path, overwrite=guard.replaces) as folder:
        for recommender, run, seed in tqdm(jobs, desc="compare runs", disable=not config.show_progress):
            run_config = dataclasses.replace(config, recommender=recommender, protocol=protocols[0], seed=seed)
            path = runs[run] if run in tables else None
            records += [{"run": run, **record}
                        for record in run_records(run_config, dataset, path, tables.get(run), protocols)]
        # protocol-major order, as when each protocol had its own training runs
        records.sort(key=lambda record: protocols.index(record["protocol"]))
        summary = summarize_runs(records)
        group_sizes = {r["protocol"]: r["group_sizes"] for r in records}
        Path(folder, "results.md").write_text(markdown_table(summary, group_sizes, protocols[0]), encoding="utf-8")
        plot_ndcg_by_group(summary, Path(folder, "ndcg_by_group.png"))
        for name, table in tables.items():
            plot_projection(table, dataset.item_popularity, Path(folder, f"projection_{_file_name(name)}.png"),
                            f"{name}: PCA of the item table")
        results = {
            "data": str(dataset.path),
            "dataset_sha256": dataset.sha256,
            "tables": {name: {"path": str(runs[name]), "sha256": sha256_file(runs[name])} for name in tables},
            "seeds": seeds,
            "protocols": protocols,
            "selection_protocol": protocols[0],
            "recommenders": list(recommenders),
            "summary": list(summary.values()),
            "runs": records,
        }
        write_json(Path(folder, "results.json"), results)
    return results
