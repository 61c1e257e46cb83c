"""Does CRRL raise the held-out reward? A seeded run against the same run with its training reward negated.

    python benchmarks/bench_crrl_heldout.py --json [--seeds 0 1 2] [--items-per-step 64]

For each seed: a short LRCL run of the bundled MiniLM on the bundled sample (20 steps x 8 items, max length 48, the
test suite's), then two CRRL runs from it that differ only in the sign of the training reward (`cooc_softmax`).
Both report the noise-free `cooc_ndcg` of the same 256 held-out items at start and end; `gap` is rewarded end minus
negated end. A policy that follows its reward gives a positive gap; noise gives gaps of either sign.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_embedder  # noqa: E402  (CPU name, JSON printer)

from reaemb_trl.crrl import (
    CRRLConfig,  # noqa: E402
    run,  # noqa: E402
)
from reaemb_trl.data import prepare_dataset, sample_dataset_files  # noqa: E402
from reaemb_trl.io_utils import sigterm_as_interrupt  # noqa: E402
from reaemb_trl.lrcl import LRCLTrainer  # noqa: E402
from reaemb_trl.rewards import register_reward  # noqa: E402
from reaemb_trl.rewards.builtin import cooc_softmax  # noqa: E402
from reaemb_trl.testing import short_minilm_lrcl_config  # noqa: E402


@register_reward("negated_cooc_softmax")
def negated_cooc_softmax(scores, positive_weights, **kwargs):
    return -cooc_softmax(scores, positive_weights)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="One LRCL + two CRRL runs per seed.")
    parser.add_argument("--items-per-step", type=int, default=64, help="CRRL items per step (x G = 8 samples).")
    parser.add_argument("--steps", type=int, default=40, help="CRRL optimizer steps.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    return parser.parse_args(argv)


def short_lrcl(data: Path, output: Path, seed: int) -> Path:
    LRCLTrainer(short_minilm_lrcl_config(data, output, seed)).train()
    return output


def crrl(lrcl: Path, data: Path, output: Path, reward: str, seed: int, args) -> dict:
    config = CRRLConfig(output_dir=str(output), lrcl_model_path=str(lrcl), dataset_dir=str(data), rewards=[reward],
                        eval_reward="cooc_ndcg", eval_items=256, num_generations=8,
                        per_device_train_batch_size=8 * args.items_per_step, max_steps=args.steps, num_iterations=1,
                        learning_rate=1e-3, warmup_steps=0, lr_scheduler_type="constant", sigma=0.02,
                        scale_rewards="batch", logging_steps=10, save_strategy="no",
                        report_to="none", use_cpu=True, seed=seed, disable_tqdm=True, log_level="error")
    started = time.perf_counter()
    metrics = run(config)
    return {"start": metrics["start"]["eval_start_cooc_ndcg"], "end": metrics["end"]["eval_cooc_ndcg"],
            "seconds": time.perf_counter() - started}


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.getLogger("reaemb_trl.embedder.prompts").setLevel(logging.ERROR)
    per_seed = {}
    # The trainers log to stdout; it carries the result only.
    with tempfile.TemporaryDirectory() as workdir, contextlib.redirect_stdout(sys.stderr):
        workdir = Path(workdir)
        inter, items = sample_dataset_files()
        data = prepare_dataset("seqjson", interactions=inter, items=items, output=workdir / "data")
        for seed in args.seeds:
            lrcl = short_lrcl(data, workdir / f"lrcl-{seed}", seed)
            rewarded = crrl(lrcl, data, workdir / f"rewarded-{seed}", "cooc_softmax", seed, args)
            negated = crrl(lrcl, data, workdir / f"negated-{seed}", "negated_cooc_softmax", seed, args)
            per_seed[seed] = {"rewarded": rewarded, "negated": negated, "gap": rewarded["end"] - negated["end"]}
    result = {"machine": bench_embedder.cpu_name(), "items_per_step": args.items_per_step, "steps": args.steps,
              "per_seed": per_seed,
              "rises": sum(r["rewarded"]["end"] > r["rewarded"]["start"] for r in per_seed.values()),
              "positive_gaps": sum(r["gap"] > 0 for r in per_seed.values())}
    bench_embedder.emit(result, args.json)
    return result


if __name__ == "__main__":
    with sigterm_as_interrupt():  # a scheduler's SIGTERM unwinds like Ctrl-C: temporary folders go
        main()
