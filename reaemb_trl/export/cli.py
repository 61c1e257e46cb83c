"""`reaemb-trl export --model DIR --data PREPARED_DIR --output FILE [--format F] [--normalize] [--pca D] ...`.

`--model` / `--output` may be repeated in pairs: folders that share pass 1 (an LRCL folder and the CRRL folder
trained from it) are then encoded from one pass 1 per batch."""

from __future__ import annotations

import argparse

from ..errors import InputError
from .export import check_dataset, check_export_numbers, default_device, export_item_tables, output_guards
from .formats import FORMATS, check_output, recbole_config_path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reaemb-trl export",
        description="Embed every item of a prepared dataset with a trained embedder folder and write a table: "
                    "safetensors (tensor 'embeddings', row 0 = padding, row i = item i), npy, parquet or a RecBole "
                    "atomic file, with the source item ids and the metadata beside it (docs/export_formats.md).",
    )
    parser.add_argument("--model", required=True, action="append",
                        help="Embedder folder (LatentReasoningEmbedder.save_pretrained); repeat with --output for "
                        "several folders in one run.")
    parser.add_argument("--data", required=True, help="Prepared dataset folder (reaemb-trl prepare).")
    parser.add_argument("--output", required=True, action="append",
                        help="Table file to write, e.g. items.safetensors; one per --model, in the same order. Other "
                        "formats take NAME or NAME.SUFFIX (items.npy, items.parquet, items.itememb).")
    parser.add_argument("--format", dest="table_format", default="safetensors",
                        help=f"One of {', '.join(FORMATS)}: safetensors (default) keeps the padding row 0; npy, "
                        "parquet and recbole (NAME.itememb + NAME.recbole.yaml) hold items 1..N only.")
    parser.add_argument("--normalize", action="store_true",
                        help="L2-normalise every item row (default: rows as the model gives them).")
    parser.add_argument("--pca", type=int, help="Also write a PCA-reduced table FILE.pcaD.safetensors "
                        "(--format safetensors only).")
    parser.add_argument("--batch-size", type=int, default=32, help="Items per forward pass (default: 32).")
    parser.add_argument("--execution-path", choices=("fast", "reference"),
                        help="How the two passes run (default: fast for decoders; encoders always run reference).")
    parser.add_argument("--num-items", type=int, help="Refuse a dataset that does not have exactly this many items.")
    parser.add_argument("--overwrite", action="store_true",
                        help="Replace existing tables that an export wrote (never other files, never inputs).")
    parser.add_argument("--device", help="torch device (default: cuda when available, else cpu).")
    parser.add_argument("--no-progress", dest="show_progress", action="store_false", help="Hide the progress bar.")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from transformers.utils import logging as transformers_logging

    from ..data import PreparedDataset
    from ..embedder import LatentReasoningEmbedder

    check_export_numbers(args.batch_size, args.pca, args.num_items)  # before any file is looked at
    if len(args.model) != len(args.output):
        raise InputError(f"--model was given {len(args.model)} times and --output {len(args.output)} times: "
                         "give one --output per --model")
    # the outputs' checks, before the models load (export_item_tables makes them again, then takes the guards)
    for output in args.output:
        check_output(args.table_format, output, args.pca)
    output_guards(args.output, args.table_format, args.pca, [args.data, *args.model], args.overwrite)
    dataset = PreparedDataset.load(args.data)
    check_dataset(dataset, args.num_items)  # before the models load, which takes seconds to minutes
    if not args.show_progress:
        transformers_logging.disable_progress_bar()  # the "Loading weights" bars
    device = args.device or default_device()
    embedders = [LatentReasoningEmbedder.from_pretrained(model).to(device) for model in args.model]
    written = export_item_tables(embedders, dataset, args.output, pca=args.pca, batch_size=args.batch_size,
                                 execution_path=args.execution_path, num_items=args.num_items, model_names=args.model,
                                 show_progress=args.show_progress, table_format=args.table_format,
                                 normalize=args.normalize, overwrite=args.overwrite)
    for file in written:
        print(f"wrote {file}")
        if args.table_format == "recbole":
            config = recbole_config_path(file)
            print(f"RecBole settings ({config}):\n{config.read_text(encoding='utf-8')}")
    return 0
