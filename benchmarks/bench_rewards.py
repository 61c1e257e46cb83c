"""Which CRRL reward settings help downstream: positive rule x negative kind x CRRL length, from one LRCL model.

    python benchmarks/bench_rewards.py --json --lrcl LRCL_FOLDER --data PREPARED_DIR
        [--recipe recipes/quality_smollm2.yaml] [--variants ...] [--recommenders sasrec gru4rec]
        [--protocols full sampled] [--seeds 3] [--crrl-seeds 42 43 44] [--output outputs/rewards_bundled-smollm2]

Each variant is the recipe's CRRL section with a few keys changed (VARIANTS), run from the same LRCL folder once per
CRRL seed (--crrl-seeds; the recipe's seed by default). The CRRL seed draws the policy's noise and the item order,
and moves a row's downstream score as much as the variants differ, so a variant is judged on its mean over CRRL
seeds; its table for CRRL seed S is named VARIANT_seedS (plain VARIANT for the recipe's seed). A variant's CRRL reads
its co-occurrence with the variant's `cooc_window` (whole prefixes without one): --data itself where that is how
--data was prepared, else --data prepared again with it (the same sequences, checked). Every table
(the LRCL table itself as `lrcl`, and one per variant) is exported in one pass (the CRRL folders share the LRCL
backbone, so they share pass 1), then trained downstream once per recommender x seed (the same seeds for every
table) and tested under every protocol; the first protocol's validation NDCG@10 picks the checkpoint.
Reported per variant: CRRL's held-out noise-free reward start -> end with its floor and ceiling, CRRL
seconds and items/s, validation and test NDCG@10 per seed, and the test difference to `lrcl` paired by seed; per
variant, the same over its CRRL seeds. The variant to use is chosen on VALIDATION NDCG@10 (first protocol, overall,
mean over recommenders, seeds and CRRL seeds), never on test, among the variants measured with every CRRL seed the
study has used (this run's --crrl-seeds and earlier runs'), or else with every seed of this run.
Results are written after every stage to OUTPUT/rewards.json, so a killed study resumes where it stopped.
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

import yaml

from reaemb_trl.crrl import CRRLConfig
from reaemb_trl.crrl import run as run_crrl
from reaemb_trl.data import PreparedDataset, prepare_dataset
from reaemb_trl.data.prepare import PrepareOptions
from reaemb_trl.downstream import RECOMMENDERS, DownstreamConfig
from reaemb_trl.downstream.evaluate import load_table, run_records
from reaemb_trl.downstream.quality import paired_difference
from reaemb_trl.embedder import LatentReasoningEmbedder
from reaemb_trl.export import ExportOptions, default_device, export_item_tables
from reaemb_trl.io_utils import atomic_path, write_json
from reaemb_trl.pipeline import PipelineConfig

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "quality_smollm2.yaml"
BASELINE = "lrcl"  # the LRCL table, no CRRL
# variant -> CRRL overrides of the recipe. Every variant names its batch and length, so that it reproduces its row
# whatever the recipe's own CRRL length is (32 items x G 8 = 256 samples per step, or 128 items = 1024).
FIRST_PASS = {"per_device_train_batch_size": 256, "max_steps": 20}   # the study's first length: 640 item visits
ONE_PASS = {"per_device_train_batch_size": 256, "max_steps": 72}     # one pass over the 2,279 count-positive items
BATCH128 = {"per_device_train_batch_size": 1024, "max_steps": 14}    # one pass over the 1,725 items with a PMI positive
VARIANTS = {
    "count": {"positive_rule": "count", **FIRST_PASS},                   # the paper's positives, random ties
    "cosine": {"positive_rule": "cosine", **FIRST_PASS},
    "pmi": {"positive_rule": "pmi", **FIRST_PASS},
    "count_hard": {"positive_rule": "count", "num_hard_negatives": 5, **ONE_PASS},
    "cosine_hard": {"positive_rule": "cosine", "num_hard_negatives": 5, **ONE_PASS},
    "pmi_hard": {"positive_rule": "pmi", "num_hard_negatives": 5, **ONE_PASS},
    # the batch lever: 4x the samples behind each step's gradient estimate, a quarter of the optimizer steps' drift
    "pmi_batch128": {"positive_rule": "pmi", **BATCH128},
    # twice that batch, as two micro-batches of 128 items (pmi_batch128's memory): 7 steps, the same one pass
    "pmi_batch256": {"positive_rule": "pmi", "per_device_train_batch_size": 1024, "gradient_accumulation_steps": 2,
                     "max_steps": 7},
    # the same 1,024 samples per step spent on G: 16 items x 64 samples. A Gaussian policy's gradient is a
    # zeroth-order estimate whose noise grows with the embedding width d over G (d / G = 72 at G 8 on the decoder)
    "pmi_g64": {"positive_rule": "pmi", "num_generations": 64, "per_device_train_batch_size": 1024, "max_steps": 20,
                "per_device_eval_batch_size": 64},  # TRL: eval batches hold whole groups too
    # at pmi_batch128's shape: the table moves little in one pass (held-out reward +0.006 of the 0.13 to the ceiling)
    "pmi_3pos": {"positive_rule": "pmi", "num_positives": 3, **BATCH128},  # the top 3 PMI items, weighted by score
    "pmi_lr3e3": {"positive_rule": "pmi", "learning_rate": 3.0e-3, **BATCH128},   # larger steps
    "pmi_2pass": {"positive_rule": "pmi", "per_device_train_batch_size": 1024, "max_steps": 28},  # two passes
    # co-occurrence counted only between items at most W positions apart (`prepare --cooc-window W`): neighbours in
    # a sequence, closer to the next-item task downstream than a whole prefix. `cooc_window` is a prepare option, not
    # a CRRL key (data_with_window); the other variants count whole prefixes
    "pmi_window1": {"positive_rule": "pmi", "cooc_window": 1, **BATCH128},
    "count_window1": {"positive_rule": "count", "cooc_window": 1, **BATCH128},
    # CRRL's move is mostly a random walk (bench_crrl_drift: runs from one start barely agree). A walk's noise grows
    # like lr x sqrt(steps) and its drift like lr x steps: a quarter of the rate over four passes keeps the drift and
    # halves the noise
    "pmi_window1_slow": {"positive_rule": "pmi", "cooc_window": 1, "learning_rate": 2.5e-4,
                         "per_device_train_batch_size": 1024, "max_steps": 56},
}
WINDOW_KEY = "cooc_window"
DEFAULT_VARIANTS = ("count", "cosine", "pmi", "pmi_hard")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lrcl", required=True, help="LRCL output folder every variant starts from.")
    parser.add_argument("--data", required=True, help="The prepared folder the LRCL model was trained on.")
    parser.add_argument("--recipe", default=str(RECIPE), help="Pipeline recipe whose crrl / export / compare sections "
                        "are the baseline settings.")
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--recommenders", nargs="+", default=["sasrec", "gru4rec"],
                        choices=[name for name, entry in RECOMMENDERS.items() if entry.uses_table])
    parser.add_argument("--protocols", nargs="+", default=["full", "sampled"],
                        help="The first picks each model's checkpoint and the variant; all are reported.")
    parser.add_argument("--seeds", type=int, default=3, help="Recommender seeds 0 .. N-1, the same for every table.")
    parser.add_argument("--crrl-seeds", nargs="+", type=int, default=None, metavar="SEED",
                        help="CRRL seeds every variant runs with (default: the recipe's seed). The choice is made on "
                        "the mean over CRRL seeds, among the variants measured with every CRRL seed the study has "
                        "used (this run's and earlier runs'), or else with every seed of this run.")
    parser.add_argument("--crrl", nargs="+", default=[], metavar="KEY=VALUE", type=_setting,
                        help="CRRL keys set for every variant after its own changes (e.g. max_steps=2 for a smoke "
                        "run); values are YAML.")
    parser.add_argument("--output", default="outputs/rewards_bundled-smollm2")
    parser.add_argument("--json", action="store_true", help="Print rewards.json as the last stdout line.")
    args = parser.parse_args(argv)
    keys = dict(args.crrl)
    if "seed" in keys:  # a row's CRRL seed is part of its name
        parser.error("set CRRL seeds with --crrl-seeds, not --crrl seed=...")
    unknown = sorted(set(keys) - {field.name for field in dataclasses.fields(CRRLConfig)})
    if unknown:
        verb = "is not a CRRL key" if len(unknown) == 1 else "are not CRRL keys"
        parser.error(f"--crrl: {', '.join(unknown)} {verb}")
    return args


def _setting(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


def crrl_stage(recipe: PipelineConfig, overrides: dict, lrcl: Path, data: Path, output: Path) -> dict:
    """CRRL from `lrcl` with the recipe's settings and `overrides`: held-out reward, its bounds, time."""
    settings = {"seed": recipe.seed, **recipe.crrl, **overrides, "lrcl_model_path": str(lrcl),
                "dataset_dir": str(data), "output_dir": str(output), "overwrite_output_dir": True,
                "save_strategy": "no", "disable_tqdm": True}
    settings.pop("save_steps", None)
    config = CRRLConfig(**settings)
    started = time.perf_counter()
    metrics = run_crrl(config)
    seconds = time.perf_counter() - started
    items = (config.max_steps * config.per_device_train_batch_size * config.gradient_accumulation_steps
             // config.num_generations)
    key = f"eval_{config.eval_reward}"
    return {"start": metrics["start"][f"eval_start_{config.eval_reward}"], "end": metrics["end"][key],
            "floor": metrics.get("reward_floor"), "ceiling": metrics.get("reward_ceiling"),
            **training_item_reward(metrics, config.eval_reward),
            "train_items": metrics["train_items"], "steps": config.max_steps, "item_visits": items,
            "seconds": seconds, "items_per_second": items / seconds}


def data_with_window(data: Path, window: int | None, out: Path) -> Path:
    """`data` if its co-occurrence was counted with `window` (None: whole prefixes), else `data` prepared again from
    the inputs and options its dataset.json records, with that window; refused unless its sequences are `data`'s (the
    LRCL table and the downstream split stay)."""
    recorded = json.loads((data / "dataset.json").read_text())
    if recorded["parameters"].get(WINDOW_KEY) == window:
        return data
    folder = out / (f"data_{WINDOW_KEY}{window}" if window is not None else "data_whole_prefix")
    if not (folder / "dataset.json").is_file():
        known = {option.name for option in dataclasses.fields(PrepareOptions)}
        options = {key: value for key, value in recorded["parameters"].items() if key in known}
        items = recorded["inputs"]["items"]
        prepare_dataset(recorded["source_format"], recorded["inputs"]["interactions"]["path"],
                        items["path"] if items else None, output=folder, show_progress=False,
                        **{**options, WINDOW_KEY: window})
    windowed = json.loads((folder / "dataset.json").read_text())
    if windowed["outputs"]["inter.txt"] != recorded["outputs"]["inter.txt"]:
        raise SystemExit(f"{folder}: its sequences differ from {data}'s (were the raw inputs changed?)")
    return folder


def training_item_reward(metrics: dict, reward: str) -> dict:
    """CRRL's noise-free `reward` on a sample of its own training items, start and end (crrl_metrics.json)."""
    return {"train_start": metrics["start"].get(f"eval_start_train_items_{reward}"),
            "train_end": metrics["end"].get(f"eval_train_items_{reward}")}


def downstream_stage(recipe: PipelineConfig, dataset: PreparedDataset, table_path: Path, recommenders, protocols,
                     seeds: int) -> dict:
    """{recommender: {protocol: {"valid": [per seed], "test": [...], "tail": [...]}}} of NDCG@10."""
    table = load_table(table_path, dataset)
    result = {}
    for recommender in recommenders:
        per_protocol = {protocol: {"valid": [], "test": [], "tail": []} for protocol in protocols}
        for seed in range(seeds):
            config = dataclasses.replace(DownstreamConfig(recommender=recommender, protocol=protocols[0], seed=seed,
                                                          show_progress=False), **recipe.compare.options)
            for record in run_records(config, dataset, table_path, table, protocols):
                row = per_protocol[record["protocol"]]
                row["valid"].append(record["valid"]["NDCG@10"])
                row["test"].append(record["overall"]["NDCG@10"])
                row["tail"].append(record["tail_items"]["NDCG@10"])
        result[recommender] = per_protocol
    return result


def table_name(variant: str, crrl_seed: int, recipe_seed: int) -> str:
    """The row of `variant` run with `crrl_seed`: the variant's own name for the recipe's seed."""
    return variant if crrl_seed == recipe_seed else f"{variant}_seed{crrl_seed}"


def variant_names(tables: dict) -> list[str]:
    """The variants that have rows, in the order they were first measured."""
    return list(dict.fromkeys(row["variant"] for row in tables.values() if "variant" in row))


def replicates(tables: dict, variant: str) -> dict:
    """{crrl seed: row} of `variant`'s rows that have been trained downstream."""
    return {row["crrl_seed"]: row for row in tables.values()
            if row.get("variant") == variant and row.get("downstream")}


def _mean(values) -> float:
    return statistics.mean(values)


def _spread(values) -> str:
    return f"{_mean(values):.4f} ± {statistics.stdev(values):.4f}" if len(values) > 1 else f"{values[0]:.4f}"


def selection_score(row: dict, protocol: str) -> float:
    """Mean validation NDCG@10 under `protocol` over recommenders and seeds: the number a variant is chosen on."""
    return _mean([value for by_protocol in row["downstream"].values() for value in by_protocol[protocol]["valid"]])


def choose(tables: dict, study_seeds, run_seeds, recommenders, protocol: str) -> tuple[str, list[int]]:
    """The variant with the best mean validation over CRRL seeds, among the variants measured with every CRRL seed
    the study has used (a variant added later with one seed does not displace a choice made over three); where no
    variant has them all, among those measured with every seed of this run. Every variant compared has the same
    CRRL seeds: this run's rows or earlier runs' (a study extended by a variant)."""
    for seeds in (study_seeds, run_seeds):
        complete = {}
        for variant in variant_names(tables):
            rows = replicates(tables, variant)
            if all(seed in rows and set(rows[seed]["downstream"]) >= set(recommenders) for seed in seeds):
                complete[variant] = _mean([selection_score(rows[seed], protocol) for seed in seeds])
        if complete:
            return max(complete, key=complete.get), list(seeds)
    raise ValueError(f"no variant is measured with every CRRL seed of this run ({list(run_seeds)})")


def rewards_markdown(results: dict) -> str:
    """One row per table: CRRL's movement, validation (selection) score, and per recommender x protocol the test
    NDCG@10 (mean ± std over seeds) with its difference to `lrcl` paired by seed."""
    tables = results["tables"]
    protocols, selection = results["protocols"], results["protocols"][0]
    baseline = tables.get(BASELINE)
    columns = [(rec, protocol) for rec in results["recommenders"] for protocol in protocols]
    lines = ["| table | changes | CRRL steps (item visits) | CRRL held-out reward start -> end (floor, ceiling) | "
             "CRRL training-item reward start -> end | CRRL s (items/s) | "
             f"valid NDCG@10 ({selection}, selection) | "
             + " | ".join(f"{rec} {protocol} test NDCG@10 (vs lrcl, paired)" for rec, protocol in columns) + " |",
             "|---|---|---|---|---|---|---|" + "---|" * len(columns)]
    for name, row in tables.items():
        if set(row.get("downstream", {})) != set(results["recommenders"]):
            continue
        crrl = row.get("crrl")
        moved = (f"{crrl['start']:.4f} -> {crrl['end']:.4f} ({crrl['floor']:.3f}, {crrl['ceiling']:.3f})"
                 if crrl and crrl.get("floor") is not None else
                 f"{crrl['start']:.4f} -> {crrl['end']:.4f}" if crrl else "-")
        trained = (f"{crrl['train_start']:.4f} -> {crrl['train_end']:.4f}"
                   if crrl and crrl.get("train_end") is not None else "-")
        cost = f"{crrl['seconds']:.0f} ({crrl['items_per_second']:.2f})" if crrl else "-"
        length = f"{crrl['steps']} ({crrl['item_visits']})" if crrl else "-"
        cells = []
        for rec, protocol in columns:
            test = row["downstream"][rec][protocol]["test"]
            cell = _spread(test)
            if baseline is not None and name != BASELINE and rec in baseline.get("downstream", {}):
                diffs = [a - b for a, b in zip(test, baseline["downstream"][rec][protocol]["test"])]
                cell += f" ({_mean(diffs):+.4f}: {', '.join(f'{d:+.4f}' for d in diffs)})"
            cells.append(cell)
        change = ", ".join(f"{k}={v}" for k, v in row.get("overrides", {}).items()) or "-"
        lines.append(f"| {name} | {change} | {length} | {moved} | {trained} | {cost} | "
                     f"{selection_score(row, selection):.4f} | " + " | ".join(cells) + " |")
    lines += ["", *variants_markdown(results)]
    if results.get("chosen"):
        lines += ["", f"Chosen on validation (mean over CRRL seeds "
                  f"{results.get('chosen_crrl_seeds', results['crrl_seeds'])}): **{results['chosen']}**."]
    return "\n".join(lines) + "\n"


def variants_markdown(results: dict) -> list[str]:
    """One row per variant over its CRRL seeds: validation mean ± std, and per recommender x protocol the test
    difference to `lrcl` (paired by recommender seed, averaged per CRRL seed) and whether `lrcl` < variant holds over
    every CRRL x recommender seed pair (the quality benchmark's rule, `paired_difference`)."""
    tables, protocols = results["tables"], results["protocols"]
    baseline = tables.get(BASELINE, {}).get("downstream", {})
    columns = [(rec, protocol) for rec in results["recommenders"] for protocol in protocols if rec in baseline]
    lines = ["| variant | CRRL seeds | valid NDCG@10 (mean ± std over CRRL seeds) | "
             + " | ".join(f"{rec} {protocol} test vs lrcl (per CRRL seed; holds?)" for rec, protocol in columns)
             + " |", "|---|---|---|" + "---|" * len(columns)]
    for variant in variant_names(tables):
        rows = {seed: row for seed, row in sorted(replicates(tables, variant).items())
                if set(row["downstream"]) >= {rec for rec, _ in columns}}
        if not rows:
            continue
        cells = []
        for rec, protocol in columns:
            lrcl_test = baseline[rec][protocol]["test"]
            per_seed = {seed: paired_difference(lrcl_test, row["downstream"][rec][protocol]["test"])["mean"]
                        for seed, row in rows.items()}
            pooled = paired_difference(lrcl_test * len(rows), [value for row in rows.values()
                                                              for value in row["downstream"][rec][protocol]["test"]])
            cells.append(f"{pooled['mean']:+.4f} ({', '.join(f'{s}: {d:+.4f}' for s, d in per_seed.items())}; "
                         f"{'holds' if pooled['holds'] else 'no'})")
        valid = [selection_score(row, protocols[0]) for row in rows.values()]
        lines.append(f"| {variant} | {', '.join(map(str, rows))} | {_spread(valid)} | " + " | ".join(cells) + " |")
    return lines


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.getLogger("reaemb_trl.embedder.prompts").setLevel(logging.ERROR)
    recipe = PipelineConfig.from_yaml(args.recipe)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "rewards.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    crrl_seeds = args.crrl_seeds or [recipe.seed]
    results.update({"recipe": str(args.recipe), "lrcl": str(args.lrcl), "data": str(args.data),
                    "seeds": list(range(args.seeds)), "recommenders": list(args.recommenders),
                    "protocols": list(args.protocols),
                    "crrl_seeds": sorted({*results.get("crrl_seeds", []), *crrl_seeds})})  # every run's
    tables = results.setdefault("tables", {})
    lrcl, data = Path(args.lrcl), Path(args.data)

    def save() -> None:
        write_json(results_path, results)
        with atomic_path(out / "rewards.md") as tmp:
            tmp.write_text(rewards_markdown(results), encoding="utf-8")

    with contextlib.redirect_stdout(sys.stderr):  # the trainers log to stdout; it carries the result only
        dataset = PreparedDataset.load(data)
        tables.setdefault(BASELINE, {"overrides": {}})
        runs = {table_name(variant, seed, recipe.seed): (variant, seed)
                for variant in args.variants for seed in crrl_seeds}
        for name, (variant, seed) in runs.items():
            changes = {**VARIANTS[variant], **dict(args.crrl), **({"seed": seed} if seed != recipe.seed else {})}
            row = tables.setdefault(name, {"overrides": changes, "variant": variant, "crrl_seed": seed})
            if "crrl" not in row:
                print(f"[rewards] crrl {name}: {changes}", file=sys.stderr, flush=True)
                crrl_keys = {key: value for key, value in changes.items() if key != WINDOW_KEY}
                crrl_data = data_with_window(data, changes.get(WINDOW_KEY), out)
                row["crrl"] = crrl_stage(recipe, crrl_keys, lrcl, crrl_data, out / name)
            elif "train_end" not in row["crrl"] and (out / name / "crrl_metrics.json").is_file():
                # a row from before the training-item reward was recorded: its own run's metrics file has it
                metrics = json.loads((out / name / "crrl_metrics.json").read_text())
                reward = json.loads((out / name / "crrl_config.json").read_text())["eval_reward"]
                row["crrl"].update(training_item_reward(metrics, reward))
            save()  # after every CRRL stage: a killed study resumes after it
        # only the tables still to be trained downstream: a finished row needs neither its table nor its CRRL folder
        names = [name for name in (BASELINE, *runs)
                 if not set(args.recommenders) <= set(tables[name].get("downstream", {}))]
        paths = {name: out / "tables" / f"{name}.safetensors" for name in names}
        missing = [name for name in names if not paths[name].is_file()]
        if missing:  # one pass 1 for every table: they share the LRCL backbone
            print(f"[rewards] export {missing}", file=sys.stderr, flush=True)
            started = time.perf_counter()
            folders = [lrcl if name == BASELINE else out / name for name in missing]
            embedders = [LatentReasoningEmbedder.from_pretrained(folder).to(default_device()) for folder in folders]
            export_item_tables(embedders, dataset, [paths[name] for name in missing],
                               ExportOptions(batch_size=recipe.export.batch_size),
                               model_names=[str(f) for f in folders])
            results.setdefault("export_seconds", {})[",".join(missing)] = time.perf_counter() - started
        for recommender in args.recommenders:  # a study extended by a recommender trains only that one
            for name in names:
                done = tables[name].setdefault("downstream", {})
                if recommender not in done:
                    print(f"[rewards] downstream {name} {recommender}", file=sys.stderr, flush=True)
                    done.update(downstream_stage(recipe, dataset, paths[name], [recommender], args.protocols,
                                                 args.seeds))
                    save()
        results["chosen"], results["chosen_crrl_seeds"] = choose(tables, results["crrl_seeds"], crrl_seeds,
                                                                 args.recommenders, args.protocols[0])
        save()
    print(json.dumps(results) if args.json else rewards_markdown(results))
    return results


if __name__ == "__main__":
    main()
