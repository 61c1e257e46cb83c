"""What each affordability lever and each pooling mode of the decoder recipe costs or buys downstream.

    python benchmarks/bench_levers.py --json [--recipe recipes/quality_smollm2.yaml] [--backbone NAME]
        [--data PREPARED_DIR] [--variants ...] [--seeds 3] [--crrl-steps 10] [--output outputs/levers_bundled-smollm2]

Each variant is the recipe's LRCL run with one change (the `recipe` variant has none): LRCL -> export of the item
table -> SASRec (sampled protocol, the recipe's compare options) over seeds 0..N-1, the same seeds for every variant.
Reported per variant: LRCL and export seconds, LRCL's held-out loss and top-1 before/after, validation NDCG@10 (the
number to choose settings on) and test NDCG@10 overall and on tail items, one value per seed. For the pooling
variants (and the recipe's own pooling) a short CRRL run from the LRCL embedder also reports the held-out noise-free
`cooc_ndcg` at start and end. Results are written after every variant to OUTPUT/levers.json and a finished variant
is not run again, so a killed study resumes where it stopped. With --json the last stdout line is that JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import statistics
import sys
import time
from pathlib import Path

from reaemb_trl.crrl import CRRLConfig
from reaemb_trl.crrl import run as run_crrl
from reaemb_trl.data import PreparedDataset, prepare_dataset, sample_dataset_files
from reaemb_trl.downstream import DownstreamConfig
from reaemb_trl.downstream.evaluate import load_table, run_records
from reaemb_trl.embedder import LatentReasoningEmbedder
from reaemb_trl.export import ExportOptions, export_item_table
from reaemb_trl.io_utils import atomic_path, sigterm_as_interrupt, write_json
from reaemb_trl.lrcl import LRCLConfig, LRCLTrainer
from reaemb_trl.pipeline import PipelineConfig

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "quality_smollm2.yaml"
# variant -> LRCL overrides of the recipe; each changes one lever or the pooling mode
VARIANTS = {
    "recipe": {},
    "pooling_mean": {"pooling": "mean"},
    "pooling_last": {"pooling": "last"},
    "pooling_weighted": {"pooling": "weighted"},
    "full_prompt": {"system_prompt": None, "max_length": 96},      # the template's default system message kept
    "lora_all_layers": {"lora_top_layers": None},                    # LoRA and its backward through all 30 layers
    "items32_steps15": {"per_device_train_batch_size": 32, "max_steps": 15, "save_steps": 5},  # same items seen
}
POOLING_VARIANTS = ("recipe", "pooling_mean", "pooling_last", "pooling_weighted")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=str(RECIPE), help="Pipeline recipe whose lrcl/crrl/compare sections "
                        "are the baseline.")
    parser.add_argument("--backbone", help="Backbone (default: the recipe's).")
    parser.add_argument("--data", help="A prepared folder (default: the bundled sample, prepared into OUTPUT/data).")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", type=int, default=3, help="SASRec seeds 0 .. N-1, the same for every variant.")
    parser.add_argument("--crrl-steps", type=int, default=10, help="CRRL steps for the pooling variants (0 = none).")
    parser.add_argument("--output", default="outputs/levers_bundled-smollm2")
    parser.add_argument("--json", action="store_true", help="Print levers.json as the last stdout line.")
    return parser.parse_args(argv)


def lrcl_stage(recipe: PipelineConfig, overrides: dict, data: Path, output: Path) -> tuple[dict, float]:
    """Held-out loss and top-1 before and after, and the stage's seconds."""
    settings = {**recipe.lrcl, **overrides, "model_name_or_path": recipe.backbone, "dataset_dir": str(data),
                "seed": recipe.seed, "output_dir": str(output), "overwrite_output_dir": True,
                "save_steps": 0}
    started = time.perf_counter()
    trainer = LRCLTrainer(LRCLConfig(**settings))
    trainer.train()
    evals = trainer.history["eval"]
    heldout = {f"{key}_{when}": evals[index][key] for when, index in (("start", 0), ("end", -1))
               for key in ("eval_loss", "eval_top1")}
    return heldout, time.perf_counter() - started


def export_stage(model_dir: Path, dataset: PreparedDataset, output: Path, batch_size: int) -> float:
    started = time.perf_counter()
    embedder = LatentReasoningEmbedder.from_pretrained(model_dir)
    export_item_table(embedder, dataset, output, ExportOptions(batch_size=batch_size, show_progress=False,
                                                               overwrite=True))
    return time.perf_counter() - started


def crrl_stage(recipe: PipelineConfig, model_dir: Path, data: Path, output: Path, steps: int) -> dict:
    settings = {**recipe.crrl, "max_steps": steps, "eval_strategy": "steps", "eval_steps": steps,
                "save_strategy": "no",
                "lrcl_model_path": str(model_dir), "dataset_dir": str(data), "seed": recipe.seed,
                "output_dir": str(output), "overwrite_output_dir": True, "use_cpu": True, "disable_tqdm": True}
    settings.pop("save_steps", None)
    started = time.perf_counter()
    metrics = run_crrl(CRRLConfig(**settings))
    start, end = metrics["start"]["eval_start_cooc_ndcg"], metrics["end"]["eval_cooc_ndcg"]
    return {"steps": steps, "start": start, "end": end, "change": end - start,
            "seconds": time.perf_counter() - started}


def downstream_stage(recipe: PipelineConfig, dataset: PreparedDataset, table_path: Path, seeds: int) -> dict:
    table = load_table(table_path, dataset)
    per_seed = []
    for seed in range(seeds):
        config = dataclasses.replace(DownstreamConfig(recommender="sasrec", protocol="sampled", seed=seed,
                                                      show_progress=False), **recipe.compare.options)
        per_seed.append(run_records(config, dataset, table_path, table)[0])
    return {"valid_NDCG@10": [r["valid"]["NDCG@10"] for r in per_seed],
            "test_NDCG@10": [r["overall"]["NDCG@10"] for r in per_seed],
            "tail_NDCG@10": [r["tail_items"]["NDCG@10"] for r in per_seed],
            "seconds": sum(r["wall_time_s"] for r in per_seed)}


def levers_markdown(results: dict) -> str:
    """One row per variant: time of each stage, LRCL's held-out top-1, validation and test NDCG@10 (mean ± std over
    seeds) and the test difference to the `recipe` variant paired by seed; CRRL's held-out movement where run."""
    baseline = results["variants"].get("recipe")
    lines = ["| variant | change | LRCL s | export s | held-out top-1 | valid NDCG@10 | test NDCG@10 | "
             "test vs recipe (paired) | tail NDCG@10 | CRRL cooc_ndcg start -> end |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def spread(values):
        return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}" if len(values) > 1 else \
            f"{values[0]:.4f}"

    for name, row in results["variants"].items():
        paired = "-"
        if baseline is not None and name != "recipe":
            diffs = [a - b for a, b in zip(row["test_NDCG@10"], baseline["test_NDCG@10"])]
            paired = f"{statistics.mean(diffs):+.4f} ({', '.join(f'{d:+.4f}' for d in diffs)})"
        crrl = row.get("crrl")
        moved = f"{crrl['start']:.4f} -> {crrl['end']:.4f} ({crrl['change']:+.4f})" if crrl else "-"
        change = ", ".join(f"{k}={v}" for k, v in row["overrides"].items()) or "(the recipe)"
        lines.append(f"| {name} | {change} | {row['lrcl_seconds']:.0f} | {row['export_seconds']:.0f} | "
                     f"{row['lrcl_heldout']['eval_top1_end']:.3f} | {spread(row['valid_NDCG@10'])} | "
                     f"{spread(row['test_NDCG@10'])} | {paired} | {spread(row['tail_NDCG@10'])} | {moved} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.getLogger("reaemb_trl.embedder.prompts").setLevel(logging.ERROR)
    recipe = PipelineConfig.from_yaml(args.recipe)
    recipe.backbone = args.backbone or recipe.backbone
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "levers.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    results.update({"recipe": str(args.recipe), "backbone": recipe.backbone, "data": str(args.data or out / "data"),
                    "seeds": list(range(args.seeds)), "recommender": "sasrec", "protocol": "sampled"})
    variants = results.setdefault("variants", {})
    with contextlib.redirect_stdout(sys.stderr):  # the trainers log to stdout; it carries the result only
        data = Path(args.data) if args.data else out / "data"
        if not (data / "dataset.json").is_file():
            inter, items = sample_dataset_files()
            prepare_dataset("seqjson", interactions=inter, items=items, output=data)
        dataset = PreparedDataset.load(data)
        for name in args.variants:
            if name in variants:
                continue
            print(f"[levers] {name}: {VARIANTS[name]}", file=sys.stderr, flush=True)
            lrcl_heldout, lrcl_seconds = lrcl_stage(recipe, VARIANTS[name], data, out / name / "lrcl")
            table = out / name / "table.safetensors"
            export_seconds = export_stage(out / name / "lrcl", dataset, table, recipe.export.batch_size)
            row = {"overrides": VARIANTS[name], "lrcl_seconds": lrcl_seconds, "export_seconds": export_seconds,
                   "lrcl_heldout": lrcl_heldout,
                   **downstream_stage(recipe, dataset, table, args.seeds)}
            if name in POOLING_VARIANTS and args.crrl_steps:
                row["crrl"] = crrl_stage(recipe, out / name / "lrcl", data, out / name / "crrl", args.crrl_steps)
            variants[name] = row
            write_json(results_path, results)
            with atomic_path(out / "levers.md") as tmp:
                tmp.write_text(levers_markdown(results), encoding="utf-8")
    print(json.dumps(results) if args.json else json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    with sigterm_as_interrupt():  # a scheduler's SIGTERM unwinds like Ctrl-C: temporary folders go
        main()
