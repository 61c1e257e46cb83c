"""Item tables compared downstream: the pipeline (prepare -> LRCL -> CRRL -> export -> compare) on one recipe with
both opt-in arms on, then the arms id_only, raw, raw_mean, lrcl_no_thought, lrcl, lrcl_cooc_sft, lrcl_crrl per
recommender x protocol over seeds, the paired-by-seed ordering raw < lrcl_no_thought < lrcl < lrcl_crrl with
lrcl_crrl against the inference-only raw_mean and the supervised lrcl_cooc_sft, and quality.json / quality.md /
quality.png in the output folder.

    python benchmarks/bench_quality.py --json [--data PREPARED_DIR] [--backbone NAME] [--recipe YAML]
        [--recommenders sasrec gru4rec] [--protocols full sampled] [--seeds N] [--output DIR]

The pipeline is resumable by config hash: a re-run with the same recipe and options reuses its finished stages.
With --json the last stdout line is one JSON object (quality.json); without it, the markdown.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import sys
import time
from pathlib import Path

from reaemb_trl.downstream import RECOMMENDERS
from reaemb_trl.downstream.protocol import PROTOCOLS
from reaemb_trl.downstream.quality import build_quality, quality_markdown, write_quality
from reaemb_trl.errors import InputError
from reaemb_trl.pipeline import PipelineConfig, PipelineRunner
from reaemb_trl.pipeline.pipeline_config import EXTRA_ARMS, CompareSection, DatasetSection
from reaemb_trl.pipeline.runner import PipelineState

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
DEFAULT_BACKBONE = "bundled-smollm2"
DEFAULT_RECIPES = {"bundled-smollm2": RECIPES / "quality_smollm2.yaml",
                   "bundled-minilm": RECIPES / "quickstart_cpu.yaml"}
# the arms are item tables: every registered recommender that reads one
TABLE_RECOMMENDERS = [name for name, entry in RECOMMENDERS.items() if entry.uses_table]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="Print quality.json as the last stdout line.")
    parser.add_argument("--data", help="An already prepared folder (`reaemb-trl prepare` output), used in place of "
                        "the recipe's dataset section.")
    parser.add_argument("--backbone", help=f"Backbone (default: the recipe's with --recipe, else {DEFAULT_BACKBONE}); "
                        f"picks the default recipe: {', '.join(DEFAULT_RECIPES)}.")
    parser.add_argument("--recipe", help="Pipeline recipe (overrides the backbone's default recipe).")
    parser.add_argument("--recommenders", nargs="+", default=["sasrec", "gru4rec"], choices=TABLE_RECOMMENDERS)
    parser.add_argument("--protocols", nargs="+", default=["full", "sampled"], choices=PROTOCOLS,
                        help="Each model is trained once; the first protocol's validation NDCG@10 picks its "
                        "checkpoint and every protocol is tested there.")
    parser.add_argument("--seeds", type=int, default=3, help="Seeds 0 .. N-1, the same for every arm.")
    parser.add_argument("--output", help="Output folder (default: outputs/quality_<backbone>).")
    return parser.parse_args(argv)


def pipeline_config(args: argparse.Namespace) -> PipelineConfig:
    backbone = args.backbone or (None if args.recipe else DEFAULT_BACKBONE)
    if args.recipe:
        recipe = Path(args.recipe)
    elif backbone in DEFAULT_RECIPES:
        recipe = DEFAULT_RECIPES[backbone]
    else:
        raise InputError(f"no default recipe for backbone {backbone!r} (defaults: {', '.join(DEFAULT_RECIPES)}); "
                         "pass --recipe")
    config = PipelineConfig.from_yaml(recipe)
    config.backbone = backbone or config.backbone
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(config.backbone).name)
    config.output_dir = args.output or f"outputs/quality_{name}"
    if args.data:
        config.dataset = DatasetSection(prepared=args.data)
    config.compare = CompareSection(recommenders=list(args.recommenders), seeds=args.seeds,
                                    protocols=list(args.protocols), options=config.compare.options)
    config.extra_arms = list(EXTRA_ARMS)  # the baselines lrcl_crrl is measured against
    return config


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        config = pipeline_config(args)
        # with --json the pipeline's own log goes to stderr; the stages' outputs still reach stdout before the JSON
        log = (lambda message: print(message, file=sys.stderr, flush=True)) if args.json else print
        PipelineRunner(config, log=log).run()
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    out = Path(config.output_dir)
    results = json.loads((out / "compare" / "results.json").read_text(encoding="utf-8"))
    quality = build_quality(results, config.backbone, args.recommenders, args.protocols)
    quality["stage_seconds"] = {name: stage.get("seconds")
                                for name, stage in PipelineState(out / "pipeline_state.json").stages.items()}
    quality["wall_time_s"] = round(time.perf_counter() - start, 2)
    # ru_maxrss is KiB on Linux: the largest resident set of this process over every stage it ran
    quality["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    quality["output"] = str(out)
    write_quality(out, quality)
    sys.stdout.flush()
    print(json.dumps(quality) if args.json else quality_markdown(quality), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
