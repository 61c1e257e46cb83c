"""How much can the thought move the item embedding under each pooling mode, and does CRRL then move the reward?

    python benchmarks/bench_pooling.py --json [--backbone bundled-smollm2] [--items 64] [--crrl-steps 10]

For each pooling mode, on the untrained backbone (fresh thought module, compact prompts as in
`recipes/quality_smollm2.yaml`) and real item texts of the bundled sample:
- `unit_change`: mean over items of |e(r + u) - e(r)| / |e(r)|, where r is the item's thought and u a random
  direction with |u| = |r| (a unit relative change of the thought);
- `sigma_change`: the same for one CRRL policy sample, u = sigma * eps (the policy noise, `--sigma`);
- with `--crrl-steps N > 0`, a CRRL run from that embedder (N steps of `--items-per-step` items x 8 samples, the
  quality recipe's CRRL settings) and its held-out noise-free `cooc_ndcg` at start and end.
In a causal decoder the states before the thought cannot see it: `mean` pooling lets the thought move only the last
j + 1 of L pooled states, `thought` and `last` all of them.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_embedder  # noqa: E402  (CPU name, JSON printer)

from reaemb_trl.crrl import (
    CRRLConfig,  # noqa: E402
    run,  # noqa: E402
)
from reaemb_trl.data import PreparedDataset, prepare_dataset, sample_dataset_files  # noqa: E402
from reaemb_trl.embedder import POOLING_MODES, LatentReasoningEmbedder  # noqa: E402
from reaemb_trl.embedder.loading import LoadingOptions
from reaemb_trl.io_utils import sigterm_as_interrupt  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="bundled-smollm2", help="Backbone name or folder.")
    parser.add_argument("--modes", nargs="+", default=list(POOLING_MODES), choices=list(POOLING_MODES))
    parser.add_argument("--items", type=int, default=64, help="Items whose embeddings are perturbed.")
    parser.add_argument("--max-length", type=int, default=64, help="Prompt length limit in tokens.")
    parser.add_argument("--sigma", type=float, default=0.02, help="CRRL policy standard deviation.")
    parser.add_argument("--crrl-steps", type=int, default=0, help="CRRL steps per mode (0 = sensitivity only).")
    parser.add_argument("--items-per-step", type=int, default=16, help="CRRL items per step (x 8 samples).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    return parser.parse_args(argv)


@torch.no_grad()
def sensitivity(embedder: LatentReasoningEmbedder, texts: list[str], sigma: float, seed: int) -> dict:
    embedder.eval()
    batch = embedder.tokenize(texts)
    prefix = embedder.encode_prefix(**batch)
    mu = embedder.thought_mean(prefix)
    base = embedder.embed_with_thoughts(prefix, mu)
    generator = torch.Generator().manual_seed(seed)
    direction = torch.randn(mu.shape, generator=generator)
    unit = direction / direction.norm(dim=-1, keepdim=True) * mu.norm(dim=-1, keepdim=True)

    def relative_change(delta: torch.Tensor) -> float:
        moved = embedder.embed_with_thoughts(prefix, mu + delta)
        return float(((moved - base).norm(dim=-1) / base.norm(dim=-1)).mean())

    return {"unit_change": relative_change(unit), "sigma_change": relative_change(sigma * direction),
            "thought_norm": float(mu.norm(dim=-1).mean()), "mean_prompt_tokens": float(batch["attention_mask"].sum(1)
                                                                                      .float().mean())}


def crrl_movement(model_dir: Path, data: Path, output: Path, args) -> dict:
    config = CRRLConfig(output_dir=str(output), lrcl_model_path=str(model_dir), dataset_dir=str(data),
                        rewards=["cooc_softmax"], eval_reward="cooc_ndcg", eval_items=128, num_generations=8,
                        per_device_train_batch_size=8 * args.items_per_step, max_steps=args.crrl_steps,
                        num_iterations=1, learning_rate=1e-3, warmup_steps=0, lr_scheduler_type="constant",
                        sigma=args.sigma, scale_rewards="batch", refresh_every=5, logging_steps=5,
                        save_strategy="no", report_to="none", use_cpu=True, seed=args.seed, disable_tqdm=True,
                        log_level="error")
    started = time.perf_counter()
    metrics = run(config)
    start, end = metrics["start"]["eval_start_cooc_ndcg"], metrics["end"]["eval_cooc_ndcg"]
    return {"start": start, "end": end, "change": end - start, "seconds": time.perf_counter() - started}


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.getLogger("reaemb_trl.embedder.prompts").setLevel(logging.ERROR)
    per_mode = {}
    # The trainers log to stdout; it carries the result only.
    with tempfile.TemporaryDirectory() as workdir, contextlib.redirect_stdout(sys.stderr):
        workdir = Path(workdir)
        inter, items = sample_dataset_files()
        data = prepare_dataset("seqjson", interactions=inter, items=items, output=workdir / "data")
        texts = PreparedDataset.load(data).item_texts[1 : args.items + 1]
        for mode in args.modes:
            options = LoadingOptions(pooling=mode, system_prompt="", max_length=args.max_length, seed=args.seed)
            embedder = LatentReasoningEmbedder.from_backbone(args.backbone, options)
            per_mode[mode] = sensitivity(embedder, texts, args.sigma, args.seed)
            if args.crrl_steps:
                embedder.save_pretrained(workdir / f"raw-{mode}")
                per_mode[mode]["crrl"] = crrl_movement(workdir / f"raw-{mode}", data, workdir / f"crrl-{mode}", args)
    result = {"machine": bench_embedder.cpu_name(), "backbone": args.backbone, "items": args.items,
              "sigma": args.sigma, "crrl_steps": args.crrl_steps, "items_per_step": args.items_per_step,
              "modes": per_mode}
    bench_embedder.emit(result, args.json)
    return result


if __name__ == "__main__":
    with sigterm_as_interrupt():  # a scheduler's SIGTERM unwinds like Ctrl-C: temporary folders go
        main()
