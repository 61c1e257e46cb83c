"""`report.md`: the comparison table, the pictures, the wall time of each stage and the settings that produced them."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import yaml

from ..io_utils import atomic_path

# What each compared run is (`{pooling}`: the recipe's LRCL pooling).
RUNS = {
    "id-only": "no item text",
    "raw_backbone": "the untrained backbone's table, {pooling} pooling, no thought",
    "raw_mean": "the untrained backbone, mean pooling, no thought: the usual inference-only LLM embedding",
    "lrcl_no_thought": "contrastive training without the thought module: the LLMEmb-style ablation",
    "lrcl": "stage 1",
    "lrcl_cooc_sft": "stage 1 + CRRL's positives and negatives as a supervised loss on the thought module: stage 2's "
                     "control",
    "lrcl_crrl": "stage 1 + stage 2",
}


def write_report(out: Path, config, stages: dict[str, dict], tables: dict[str, Path], results: dict) -> Path:
    """report.md in `out`; `results`: what `compare` returned (results.json)."""
    compare_dir = out / "compare"
    # compare's own table, its title dropped and its headings moved one level down to sit under ours
    results = "\n".join("#" + line if line.startswith("#") else line
                        for line in _results_markdown(results).splitlines()[1:]).strip()
    pictures = sorted(p.relative_to(out) for p in [*compare_dir.glob("*.png"), *out.glob("lrcl*/*.png"),
                                                   *out.glob("crrl/*.png")])
    total = sum(stage.get("seconds", 0.0) for stage in stages.values())
    protocols = config.compare.protocol_list()
    protocol_note = f"Protocol: `{protocols[0]}`."
    if len(protocols) > 1:
        protocol_note = (f"Protocols: {', '.join(f'`{p}`' for p in protocols)}. Each model is trained once; its "
                         f"checkpoint is the best validation NDCG@10 under `{protocols[0]}`, and every protocol's test "
                         "metrics come from that checkpoint.")
    lines = [
        "# ReaEmb pipeline report",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
        f"{_torch_device()}. Backbone: `{config.backbone}`. Seed {config.seed}.",
        "",
        "## Downstream comparison",
        "",
        protocol_note,
        "",
        results,
        "",
        "Runs: " + ", ".join(f"`{run}` ({RUNS[run].format(pooling=config.lrcl.get('pooling', 'mean'))})"
                             for run in ["id-only", *tables]) + ".",
        "",
        "## Pictures",
        "",
        *(f"![{p.stem}]({p.as_posix()})" for p in pictures),
        "",
        "## Wall time per stage",
        "",
        "| stage | seconds | finished |",
        "|---|---:|---|",
        *(f"| {name} | {stage.get('seconds', 0.0):.1f} | {stage.get('finished', '')} |"
          for name, stage in stages.items()),
        f"| **total** | **{total:.1f}** | |",
        "",
        "## Embedding tables",
        "",
        *(f"- `{run}`: `{path.relative_to(out).as_posix()}`" for run, path in tables.items()),
        "",
        "## Settings",
        "",
        "```yaml",
        yaml.safe_dump(config.to_dict(), sort_keys=False).strip(),
        "```",
        "",
        "Each stage's own recipe is in `recipes/`; run it with `reaemb-trl STAGE --config recipes/STAGE.yaml`.",
        "",
    ]
    path = out / "report.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines), encoding="utf-8")
    return path


def _results_markdown(results: dict) -> str:
    """compare's results page (results.md), from the results it returned."""
    from ..downstream.compare import markdown_table

    summary = {(row["protocol"], row["recommender"], row["run"]): row for row in results["summary"]}
    group_sizes = {record["protocol"]: record["group_sizes"] for record in results["runs"]}
    return markdown_table(summary, group_sizes, results["selection_protocol"])


def _torch_device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}"
    return f"torch {torch.__version__} on CPU"
