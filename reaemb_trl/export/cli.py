"""`reaemb-trl export --model DIR --data PREPARED_DIR --output FILE [--pca D] [--batch-size B] [--path P]`.

`--model` / `--output` may be repeated in pairs: folders that share pass 1 (an LRCL folder and the CRRL folder
trained from it) are then encoded from one pass 1 per batch."""

from __future__ import annotations

import argparse

from ..errors import InputError
from .export import export_item_tables


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reaemb-trl export",
        description="Embed every item of a prepared dataset with a trained embedder folder and write a safetensors "
                    "table (tensor 'embeddings', row 0 = padding, row i = item i).",
    )
    parser.add_argument("--model", required=True, action="append",
                        help="Embedder folder (LatentReasoningEmbedder.save_pretrained); repeat with --output for "
                        "several folders in one run.")
    parser.add_argument("--data", required=True, help="Prepared dataset folder (reaemb-trl prepare).")
    parser.add_argument("--output", required=True, action="append",
                        help="Table file to write, e.g. items.safetensors; one per --model, in the same order.")
    parser.add_argument("--pca", type=int, help="Also write a PCA-reduced table FILE.pcaD.safetensors.")
    parser.add_argument("--batch-size", type=int, default=32, help="Items per forward pass (default: 32).")
    parser.add_argument("--path", choices=("fast", "reference"), help="Execution path (default: fast for decoders).")
    parser.add_argument("--num-items", type=int, help="Refuse a dataset that does not have exactly this many items.")
    parser.add_argument("--device", help="torch device (default: cuda when available, else cpu).")
    parser.add_argument("--no-progress", dest="show_progress", action="store_false", help="Hide the progress bar.")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from ..data import PreparedDataset
    from ..embedder import LatentReasoningEmbedder

    if len(args.model) != len(args.output):
        raise InputError(f"--model was given {len(args.model)} times and --output {len(args.output)} times: "
                         "give one --output per --model")
    dataset = PreparedDataset.load(args.data)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    embedders = [LatentReasoningEmbedder.from_pretrained(model).to(device) for model in args.model]
    written = export_item_tables(embedders, dataset, args.output, pca=args.pca, batch_size=args.batch_size,
                                 path=args.path, num_items=args.num_items, model_names=args.model,
                                 show_progress=args.show_progress)
    for file in written:
        print(f"wrote {file}")
    return 0
