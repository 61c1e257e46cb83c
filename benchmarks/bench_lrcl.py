"""LRCL training speed and held-out loss, with and without the thought module, in one run.

Default: the bundled MiniLM on the bundled Office sample, on CPU. An encoder has no fast path (both passes run in
full), so the comparison here is the latent-reasoning pass against the no-thought ablation. With
`--model DECODER_DIR --variants fast,reference` the same loop compares the decoder's two execution paths.

    python benchmarks/bench_lrcl.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

VARIANTS = {
    "thought": {},
    "no_thought": {"no_thought": True},
    "fast": {"execution_path": "fast"},
    "reference": {"execution_path": "reference"},
}


def run_variant(name: str, args, data_dir: Path, output_dir: Path) -> dict:
    from reaemb_trl.lrcl import LRCLConfig, LRCLTrainer

    config = LRCLConfig(
        model_name_or_path=args.model, dataset_dir=str(data_dir), output_dir=str(output_dir),
        lora_target_modules=args.lora_targets.split(","), max_length=args.max_length,
        per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=1, max_steps=args.steps,
        learning_rate=args.learning_rate, warmup_steps=min(3, args.steps - 1), eval_steps=0,
        eval_items=args.eval_items, save_steps=0, report_to="none", mixed_precision=args.mixed_precision,
        seed=args.seed, **VARIANTS[name])
    trainer = LRCLTrainer(config)
    trainer.train()
    before, after = trainer.history["eval"][0], trainer.history["eval"][-1]
    items_per_step = args.batch_size * trainer.accelerator.num_processes
    # The first step pays one-time costs (lazy initialisation, allocator warm-up): it is not timed.
    timed = [entry["seconds"] for entry in trainer.history["train"][1:]]
    return {"variant": name, "steps": args.steps, "timed_steps": len(timed), "items_per_step": items_per_step,
            "timed_seconds": round(sum(timed), 3),
            "items_per_second": round(len(timed) * items_per_step / sum(timed), 3),
            "heldout_loss_before": round(before["eval_loss"], 4), "heldout_loss_after": round(after["eval_loss"], 4),
            "heldout_top1_before": round(before["eval_top1"], 4), "heldout_top1_after": round(after["eval_top1"], 4)}


def main() -> None:

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="backbone folder (default: the bundled MiniLM)")
    parser.add_argument("--data", default=None, help="prepared dataset folder (default: the bundled sample)")
    parser.add_argument("--variants", default="thought,no_thought", help=f"two or more of {sorted(VARIANTS)}")
    parser.add_argument("--lora-targets", default=None, help="comma-separated LoRA module names")
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per variant (at least 2)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=48)
    parser.add_argument("--eval-items", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--mixed-precision", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    args = parser.parse_args()
    bundled_minilm = args.model is None
    args.model = args.model or "bundled-minilm"
    args.lora_targets = args.lora_targets or ("query,key,value,dense" if bundled_minilm else
                                              "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj")
    names = args.variants.split(",")

    import torch

    with tempfile.TemporaryDirectory(prefix="bench-lrcl-") as tmp:
        work = Path(tmp)
        data_dir = Path(args.data) if args.data else None
        if data_dir is None:
            from reaemb_trl.data import prepare_dataset, sample_dataset_files

            inter, items = sample_dataset_files()
            data_dir = prepare_dataset("seqjson", interactions=inter, items=items, output=work / "office")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results = [run_variant(name, args, data_dir, work / f"{index}-{name}") for index, name in enumerate(names)]

    base = results[0]["items_per_second"]
    report = {
        "benchmark": "lrcl_training",
        "model": "bundled all-MiniLM-L6-v2 (encoder: no fast path, both passes run in full)" if bundled_minilm
        else args.model,
        "dataset": "bundled Office 2014 sample" if args.data is None else args.data,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)",
        "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
        "settings": {"steps": args.steps, "batch_size": args.batch_size, "max_length": args.max_length,
                     "eval_items": args.eval_items, "learning_rate": args.learning_rate, "seed": args.seed},
        "results": results,
        "items_per_second_ratio": {f"{r['variant']}/{names[0]}": round(r["items_per_second"] / base, 3)
                                   for r in results[1:]},
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    from reaemb_trl.io_utils import sigterm_as_interrupt

    with sigterm_as_interrupt():  # a scheduler's SIGTERM unwinds like Ctrl-C: temporary folders go
        main()
