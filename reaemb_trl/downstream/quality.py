"""The quality benchmark's numbers: per-seed test metrics of each arm (item table) from `compare` records, the
paired-by-seed statistics of the ordering raw < lrcl_no_thought < lrcl < lrcl_crrl and of lrcl_crrl against its two
baselines (the inference-only raw_mean, the supervised lrcl_cooc_sft), and quality.json / .md / .png.

Reads only compare results (`results.json`), like the rest of the downstream layer.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from scipy import stats

from ..errors import InputError
from ..io_utils import atomic_path, write_json
from .compare import ID_ONLY, _mean_std
from .plots import plot_ndcg_by_group
from .registry import get_recommender

# Arm -> run name in the compare records (the pipeline's runs: `id-only` + reaemb_trl.pipeline.runner.TABLE_RUNS).
# `raw_mean` and `lrcl_cooc_sft` are opt-in pipeline arms: a run without them has no such arm.
ARMS = {"id_only": ID_ONLY, "raw": "raw_backbone", "raw_mean": "raw_mean", "lrcl_no_thought": "lrcl_no_thought",
        "lrcl": "lrcl", "lrcl_cooc_sft": "lrcl_cooc_sft", "lrcl_crrl": "lrcl_crrl"}
QUALITY_GROUPS = ("overall", "tail_items", "short_users")
QUALITY_METRICS = ("NDCG@10", "HR@10")
# Each step (lower, higher) claims that the higher arm beats the lower one. lrcl_crrl beats the best inference-only
# table when both raw<lrcl_crrl and raw_mean<lrcl_crrl hold (each its own step, no pick of the better one on test
# numbers); lrcl_cooc_sft<lrcl_crrl credits the reinforcement learning, not its training signal.
ORDERING_STEPS = (("raw", "lrcl_no_thought"), ("lrcl_no_thought", "lrcl"), ("lrcl", "lrcl_crrl"), ("raw", "lrcl_crrl"),
                  ("raw_mean", "lrcl_crrl"), ("lrcl_cooc_sft", "lrcl_crrl"))
ORDERING_GROUPS = ("overall", "tail_items")
ORDERING_METRIC = "NDCG@10"
HOLDS_DEFINITION = (
    "A step `a<b` **holds** (by more than the seed spread) when every paired difference b - a (same seed, same "
    "recommender, same protocol) is > 0 AND their mean is greater than their sample standard deviation "
    "(ddof = 1). With fewer than 2 seeds the spread is unknown and no step holds. Beside it, one-sided p-values "
    "of the paired t-test and the Wilcoxon signed-rank test (scipy.stats; H1: higher > lower); with 3 seeds the "
    "exact Wilcoxon p cannot go below 0.125."
)


def arm_metrics(records: Sequence[Mapping], seeds: Sequence[int], recommenders: Sequence[str],
                protocols: Sequence[str], arms: Mapping[str, str] = ARMS) -> dict:
    """{ARM: {RECOMMENDER: {PROTOCOL: {GROUP: {METRIC: [one value per seed, in `seeds` order]}}}}}.

    A value is None (JSON null) where the group has no user; a missing record is an error that names it.
    """
    index = {(r["run"], r["recommender"], r["protocol"], r["seed"]): r for r in records}
    missing = [(run, rec, protocol, seed) for run in arms.values() for rec in recommenders for protocol in protocols
               for seed in seeds if (run, rec, protocol, seed) not in index]
    if missing:
        shown = ", ".join(f"{run}/{rec}/{protocol}/seed {seed}" for run, rec, protocol, seed in missing[:5])
        raise InputError(f"{len(missing)} compare record(s) missing, e.g. {shown}")
    return {
        arm: {rec: {protocol: {group: {metric: [index[run, rec, protocol, seed][group][metric] for seed in seeds]
                                       for metric in QUALITY_METRICS}
                               for group in QUALITY_GROUPS}
                    for protocol in protocols}
              for rec in recommenders}
        for arm, run in arms.items()
    }


def paired_difference(lower: Sequence[float | None], higher: Sequence[float | None]) -> dict:
    """Statistics of higher - lower, paired by seed (position), and whether the step holds (HOLDS_DEFINITION)."""
    if len(lower) != len(higher):
        raise ValueError(f"paired values need the same seeds: {len(lower)} vs {len(higher)} values")
    if not lower or any(v is None for v in (*lower, *higher)):
        return {"diffs": None, "mean": None, "std": None, "min": None, "max": None, "holds": False,
                "t_pvalue": None, "wilcoxon_pvalue": None}
    diffs = np.asarray(higher, dtype=np.float64) - np.asarray(lower, dtype=np.float64)
    mean = float(diffs.mean())
    std = float(diffs.std(ddof=1)) if diffs.size > 1 else None
    holds = std is not None and bool(np.all(diffs > 0)) and mean > std
    return {"diffs": diffs.tolist(), "mean": mean, "std": std, "min": float(diffs.min()), "max": float(diffs.max()),
            "holds": holds, **paired_tests(diffs)}


def paired_tests(diffs: np.ndarray) -> dict:
    """One-sided p-values that the paired differences are > 0: t-test and Wilcoxon signed-rank (None where the test
    is undefined: fewer than 2 differences, zero spread for the t-test, all differences 0 for Wilcoxon)."""
    t_pvalue = wilcoxon_pvalue = None
    if diffs.size > 1 and float(diffs.std(ddof=1)) > 0:
        t_pvalue = float(stats.ttest_1samp(diffs, 0.0, alternative="greater").pvalue)
    if np.any(diffs != 0):
        wilcoxon_pvalue = float(stats.wilcoxon(diffs, alternative="greater").pvalue)
    return {"t_pvalue": t_pvalue, "wilcoxon_pvalue": wilcoxon_pvalue}


def ordering(arms: Mapping, steps: Sequence[tuple[str, str]] = ORDERING_STEPS,
             groups: Sequence[str] = ORDERING_GROUPS, metric: str = ORDERING_METRIC) -> dict:
    """{RECOMMENDER: {PROTOCOL: {GROUP: {"a<b": paired_difference(a, b)}}}} for the steps whose arms are present."""
    steps = [(a, b) for a, b in steps if a in arms and b in arms]
    if not steps:
        return {}
    first = arms[steps[0][0]]
    return {
        rec: {protocol: {group: {f"{a}<{b}": paired_difference(arms[a][rec][protocol][group][metric],
                                                               arms[b][rec][protocol][group][metric])
                                 for a, b in steps}
                         for group in groups}
              for protocol in first[rec]}
        for rec in first
    }


def build_quality(results: Mapping, backbone: str, recommenders: Sequence[str] | None = None,
                  protocols: Sequence[str] | None = None, arms: Mapping[str, str] = ARMS) -> dict:
    """The benchmark's record from a compare `results.json`: backbone, seeds, arms (per seed), ordering. An arm
    whose run has no record at all (an opt-in arm the pipeline did not run) is left out; so is a recommender that
    uses no table (its one run is no arm)."""
    recommenders = list(recommenders or [b for b in results["recommenders"] if get_recommender(b).uses_table])
    protocols = list(protocols or results["protocols"])
    seeds = list(results["seeds"])
    records = results["runs"]
    compared = {r["run"] for r in records}
    arms = {arm: run for arm, run in arms.items() if run in compared}
    per_arm = arm_metrics(records, seeds, recommenders, protocols, arms)
    return {
        "backbone": backbone,
        "seeds": seeds,
        "arms": per_arm,
        "ordering": ordering(per_arm),
        "selection_protocol": results.get("selection_protocol", protocols[0]),
        "data": results["data"],
        "dataset_sha256": results["dataset_sha256"],
    }


def _cell(values: Sequence[float | None]) -> str:
    stat = _mean_std(values)
    return "-" if stat["mean"] is None else f"{stat['mean']:.4f} ± {stat['std']:.4f}"


def _number(value: float | None, sign: bool = True) -> str:
    return "-" if value is None else (f"{value:+.4f}" if sign else f"{value:.4f}")


def _pvalue(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def quality_markdown(quality: Mapping) -> str:
    """One table per recommender × protocol (arms × metric/group, mean ± std over seeds) and the ordering table."""
    seeds, per_arm = quality["seeds"], quality["arms"]
    first = next(iter(per_arm.values()))
    lines = [f"# Quality benchmark: `{quality['backbone']}`", "",
             (f"Test metrics at the best validation NDCG@10 checkpoint (chosen under the "
              f"`{quality.get('selection_protocol', '?')}` protocol; each model trained once and tested under "
              f"every protocol), mean ± sample std over seeds {seeds}."), ""]
    columns = [(group, metric) for group in QUALITY_GROUPS for metric in QUALITY_METRICS]
    for rec, by_protocol in first.items():
        for protocol in by_protocol:
            lines += [f"## {rec} · {protocol}", "",
                      "| arm | " + " | ".join(f"{metric} {group.replace('_', ' ')}" for group, metric in columns)
                      + " |", "|---|" + "---|" * len(columns)]
            for arm, values in per_arm.items():
                cells = [_cell(values[rec][protocol][group][metric]) for group, metric in columns]
                lines.append(f"| {arm} | " + " | ".join(cells) + " |")
            lines.append("")
    lines += ["## Ordering", "", f"{ORDERING_METRIC}, paired by seed: diff = higher arm - lower arm. "
              + HOLDS_DEFINITION, "",
              "| recommender | protocol | group | step | mean diff | std of diffs | min diff | max diff | holds | "
              "t-test p | Wilcoxon p |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for rec, by_protocol in quality.get("ordering", {}).items():
        for protocol, by_group in by_protocol.items():
            for group, steps in by_group.items():
                for step, stat in steps.items():
                    lines.append(f"| {rec} | {protocol} | {group.replace('_', ' ')} | {step} | "
                                 f"{_number(stat['mean'])} | {_number(stat['std'], sign=False)} | "
                                 f"{_number(stat['min'])} | {_number(stat['max'])} | "
                                 f"{'yes' if stat['holds'] else 'no'} | {_pvalue(stat.get('t_pvalue'))} | "
                                 f"{_pvalue(stat.get('wilcoxon_pvalue'))} |")
    if quality.get("stage_seconds"):
        lines += ["", "## Wall time per stage", "", "| stage | seconds |", "|---|---:|",
                  *(f"| {stage} | {'-' if seconds is None else f'{seconds:.1f}'} |"
                    for stage, seconds in quality["stage_seconds"].items())]
    return "\n".join(lines) + "\n"


def plot_quality(quality: Mapping, path: str | os.PathLike, metric: str = "NDCG@10") -> None:
    """Grouped bars of `metric` per arm (overall / tail items / short users), one panel per recommender × protocol,
    error bars = sample std over seeds."""
    summary = {}
    for arm, by_rec in quality["arms"].items():
        for rec, by_protocol in by_rec.items():
            for protocol, by_group in by_protocol.items():
                summary[(protocol, rec, arm)] = {
                    "protocol": protocol, "recommender": rec, "run": arm,
                    "metrics": {group: {metric: _mean_std(by_group[group][metric])} for group in QUALITY_GROUPS}}
    plot_ndcg_by_group(summary, path, metric=metric, groups=QUALITY_GROUPS)


def write_quality(folder: str | os.PathLike, quality: Mapping) -> None:
    """quality.json, quality.md and quality.png in `folder`, each written atomically."""
    folder = Path(folder)
    write_json(folder / "quality.json", quality)
    with atomic_path(folder / "quality.md") as tmp:
        tmp.write_text(quality_markdown(quality), encoding="utf-8")
    with atomic_path(folder / "quality.png") as tmp:
        plot_quality(quality, tmp)
