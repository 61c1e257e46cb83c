"""Fast vs reference path of the latent-reasoning embedder, measured in one run, on a random-weight decoder or on a
bundled pretrained backbone.

CPU (the issue's setting):  python benchmarks/bench_embedder.py --json
GPU, Qwen2.5-0.5B shape:    python benchmarks/bench_embedder.py --json --hidden 896 --layers 24 --heads 14 \
                              --kv-heads 2 --intermediate 4864 --dtype bfloat16 --device cuda
Bundled SmolLM2-135M:       python benchmarks/bench_embedder.py --json --backbone bundled-smollm2

Reports the median of `--repeats` timings (after one warm-up) for: one LRCL step (forward + backward of two views,
LoRA on), embedding G noisy thought samples per item (CRRL), and exporting items (forward only, eval mode); ratios are
fast / reference. The random decoder embeds random words truncated to `--prompt-length` tokens. A bundled backbone
embeds real items of the bundled Office sample at their real prompt lengths (`--max-length` truncates none of them):
view A is an item's text, view B its attributes in reverse order, as LRCL's views are. On bundled-smollm2 it runs
twice, with the chat template's default system prompt and with `system_prompt=""`; bundled-minilm (an encoder, always
the reference path; no chat template) runs once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import AutoConfig  # noqa: E402

from reaemb_trl.data import PreparedDataset, join_attributes, prepare_dataset, sample_dataset_files  # noqa: E402
from reaemb_trl.embedder import (  # noqa: E402
    BUNDLED_MINILM,
    BUNDLED_SMOLLM2,
    LatentReasoningEmbedder,
    resolve_backbone,
)
from reaemb_trl.embedder.loading import LoadingOptions
from reaemb_trl.io_utils import sigterm_as_interrupt  # noqa: E402
from reaemb_trl.testing import build_tiny_decoder  # noqa: E402

RANDOM = "random"

WORDS = ("title brand categories description price paper notebook binder ink toner printer label pen stapler "
         "office writing gel pilot swingline sturdy desktop comedy drama action adventure").split()


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The random-weight Qwen2 decoder both decoder benchmarks run (defaults: the issue's CPU setting)."""
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--intermediate", type=int, default=None, help="MLP width (default: 2 x hidden).")
    parser.add_argument("--prompt-length", type=int, default=128, help="Tokens per prompt (texts are truncated).")


def build_model(args: argparse.Namespace):
    return build_tiny_decoder("qwen2", hidden_size=args.hidden, num_layers=args.layers, num_heads=args.heads,
                              num_kv_heads=args.kv_heads, intermediate_size=args.intermediate)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", choices=(RANDOM, BUNDLED_SMOLLM2, BUNDLED_MINILM), default=RANDOM,
                        help="random: a random-weight Qwen2 of the shape below; else a bundled pretrained backbone.")
    parser.add_argument("--max-length", type=int, default=256,
                        help="Bundled backbones: prompt length limit (256 truncates no item of the sample).")
    add_model_arguments(parser)
    parser.add_argument("--batch", type=int, default=16, help="Items per batch.")
    parser.add_argument("--group", type=int, default=8, help="G noisy thought samples per item.")
    parser.add_argument("--export-batches", type=int, default=4, help="Export timing embeds batch x this items.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice).")
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    return parser.parse_args(argv)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} logical cores)"
    return f"{platform.machine()} ({os.cpu_count()} logical cores)"


def median_seconds(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(embedder, texts_a: list[str], texts_b: list[str], args: argparse.Namespace,
            device: torch.device) -> dict:
    """Fast vs reference timings of one embedder on `--batch` items (two views each)."""
    view_a = {k: v.to(device) for k, v in embedder.tokenize(texts_a).items()}
    view_b = {k: v.to(device) for k, v in embedder.tokenize(texts_b).items()}

    def lrcl_step(path: str):
        def step():
            embedder.zero_grad(set_to_none=True)
            a = embedder(**view_a, execution_path=path).embeddings.float()
            b = embedder(**view_b, execution_path=path).embeddings.float()
            logits = a @ b.T / a.shape[1]
            labels = torch.arange(len(a), device=device)
            cross_entropy = torch.nn.functional.cross_entropy
            (cross_entropy(logits, labels) + cross_entropy(logits.T, labels)).backward()
        return step

    def group_sampling(path: str):
        @torch.no_grad()
        def sample():
            prefix = embedder.encode_prefix(**view_a, execution_path=path)
            embedder.sample_group(prefix, args.group, sigma=0.1, generator=torch.Generator(device).manual_seed(0))
        return sample

    export_texts = texts_a * args.export_batches

    def export(path: str):
        return lambda: embedder.encode(export_texts, batch_size=args.batch, execution_path=path, show_progress=False)

    embedder.train()
    lrcl = {path: median_seconds(lrcl_step(path), device, args.repeats) for path in ("fast", "reference")}
    embedder.eval()
    group = {path: median_seconds(group_sampling(path), device, args.repeats) for path in ("fast", "reference")}
    export_s = {path: median_seconds(export(path), device, args.repeats) for path in ("fast", "reference")}
    fast, reference = (embedder.encode(texts_a, execution_path=path, show_progress=False)
                       for path in ("fast", "reference"))
    return {
        "lrcl_step_s": lrcl,
        "lrcl_step_ratio": lrcl["fast"] / lrcl["reference"],
        "lrcl_items_per_s": {path: len(texts_a) / seconds for path, seconds in lrcl.items()},
        "group_sampling_s": group,
        "group_sampling_ratio": group["fast"] / group["reference"],
        "export_items_per_s": {path: len(export_texts) / seconds for path, seconds in export_s.items()},
        "export_ratio": export_s["fast"] / export_s["reference"],
        "max_rel_err": float((fast - reference).abs().max() / reference.abs().max()),
    }


def machine(device: torch.device) -> str:
    return cpu_name() if device.type == "cpu" else torch.cuda.get_device_name(device)


def sample_views(count: int) -> tuple[list[str], list[str]]:
    """The first `count` items of the bundled Office sample: (texts, attributes in reverse order)."""
    inter, items = sample_dataset_files()
    with tempfile.TemporaryDirectory() as folder:
        dataset = PreparedDataset.load(prepare_dataset("seqjson", interactions=inter, items=items,
                                                       output=Path(folder) / "office"))
        item_ids = range(1, count + 1)
        return ([dataset.item_texts[i] for i in item_ids],
                [join_attributes(dataset.item_attributes(i)[::-1]) for i in item_ids])


def main_bundled(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> dict:
    texts_a, texts_b = sample_views(args.batch)
    system_prompts = {"default": None, "empty": ""} if args.backbone == BUNDLED_SMOLLM2 else {"default": None}
    runs, causal = {}, True
    for label, system_prompt in system_prompts.items():
        options = LoadingOptions(use_peft=True, max_length=args.max_length, dtype=dtype, system_prompt=system_prompt)
        embedder = LatentReasoningEmbedder.from_backbone(args.backbone, options)
        embedder.to(device)
        lengths = [len(ids) for ids in embedder.prompts.build(texts_a + texts_b)]
        if max(lengths) >= args.max_length:
            raise SystemExit(f"--max-length {args.max_length} truncates prompts: raise it")
        runs[f"system_prompt_{label}"] = {
            "mean_prompt_tokens": statistics.mean(lengths), "max_prompt_tokens": max(lengths),
            **measure(embedder, texts_a, texts_b, args, device)}
        causal = embedder.config.is_causal
        del embedder
    config = AutoConfig.from_pretrained(resolve_backbone(args.backbone))
    return {
        "machine": machine(device), "device": str(device), "dtype": args.dtype,
        "torch_threads": torch.get_num_threads(),
        "backbone": args.backbone,
        "model": {"hidden": config.hidden_size, "layers": config.num_hidden_layers,
                  "heads": config.num_attention_heads,
                  "kv_heads": getattr(config, "num_key_value_heads", config.num_attention_heads),
                  "intermediate": config.intermediate_size},
        "items": f"bundled Office sample, items 1..{args.batch}", "batch": args.batch, "group": args.group,
        "repeats": args.repeats, **runs,
        **({} if causal else {"note": "an encoder: path='fast' runs the reference path too, so the ratios are ~1"}),
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    if args.backbone != RANDOM:
        result = main_bundled(args, device, dtype)
        emit(result, args.json)
        return result
    logging.getLogger("reaemb_trl.embedder.prompts").setLevel(logging.ERROR)  # every text is truncated on purpose
    model, tokenizer = build_model(args)
    model.to(dtype)
    options = LoadingOptions(use_peft=True, max_length=args.prompt_length, padding_side="left")
    embedder = LatentReasoningEmbedder.from_backbone(model, options, tokenizer=tokenizer)
    embedder.to(device)
    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(4 * args.prompt_length)) for _ in range(args.batch)]
    assert embedder.tokenize(texts)["input_ids"].shape[1] == args.prompt_length
    result = {
        "machine": machine(device), "device": str(device), "dtype": args.dtype,
        "torch_threads": torch.get_num_threads(),
        "backbone": RANDOM,
        "model": {"hidden": args.hidden, "layers": args.layers, "heads": args.heads, "kv_heads": args.kv_heads,
                  "intermediate": model.config.intermediate_size},
        "prompt_length": args.prompt_length, "batch": args.batch, "group": args.group, "repeats": args.repeats,
        **measure(embedder, texts, [" ".join(t.split()[::-1]) for t in texts], args, device),
    }
    emit(result, args.json)
    return result


def emit(result: dict, as_json: bool) -> None:
    """Print a benchmark result as JSON, or as aligned `key: value` lines."""
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        width = max(map(len, result))
        for key, value in result.items():
            print(f"{key:>{width}}: {value}")


if __name__ == "__main__":
    with sigterm_as_interrupt():  # a scheduler's SIGTERM unwinds like Ctrl-C: temporary folders go
        main()
