"""`reaemb-trl export --model DIR --data PREPARED_DIR --output FILE [--format F] [--normalize] [--pca D] ...`,
`reaemb-trl encode` (new items or texts) and `reaemb-trl convert` (a table in another format).

`--model` / `--output` may be repeated in pairs: folders that share pass 1 (an LRCL folder and the CRRL folder
trained from it) are then encoded from one pass 1 per batch."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from ..data.readers import FORMATS as SOURCE_FORMATS
from ..data.text import DEFAULT_MAX_VALUE_CHARS
from ..errors import InputError
from ..recipe import help_field, parse_recipe
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


@dataclass
class EncodeArguments:
    model: str = help_field("Embedder folder (LatentReasoningEmbedder.save_pretrained).")
    output: str = help_field("Table file to write: NAME or NAME.SUFFIX of --format-out.")
    items: str | None = help_field("Raw item file in one of prepare's formats (--format): every item in it is "
                                   "encoded, its text built as prepare builds it.", default=None)
    format: str | None = help_field(f"Format of --items: one of {', '.join(SOURCE_FORMATS)}.", default=None)
    text: list[str] = field(default_factory=list, metadata={
        "action": "extend",  # --text A --text B, or --text A B
        "help": "Texts to encode instead of --items (repeat the flag); their ids are their positions 1, 2, ..."})
    format_out: str = help_field(f"Table format: one of {', '.join(FORMATS)} (as export).", default="safetensors")
    normalize: bool = help_field("L2-normalise every row.", default=False)
    max_value_chars: int = help_field("Cut each attribute value to this many characters: the value the dataset "
                                      "was prepared with.", default=DEFAULT_MAX_VALUE_CHARS)
    encoding: str | None = help_field("Text encoding of --items (default: as prepare reads it).", default=None)
    batch_size: int = help_field("Texts per forward pass.", default=32)
    execution_path: str | None = help_field("fast or reference (default: fast for decoders; encoders always run "
                                            "reference).", default=None)
    device: str | None = help_field("torch device (default: cuda when available, else cpu).", default=None)
    overwrite: bool = help_field("Replace an existing table that an export or encode wrote.", default=False)
    show_progress: bool = help_field("Show progress bars.", default=True)


def encode_main(argv: list[str] | None = None) -> int:
    args = parse_recipe(EncodeArguments, list(argv or []), prog="reaemb-trl encode",
                        description="Embed new items (a raw item file) or plain texts with a trained embedder "
                                    "folder; the rows equal export's for the same items.")
    from ..embedder import LatentReasoningEmbedder
    from .new_items import encode_table, item_file_texts

    check_export_numbers(args.batch_size)
    if (args.items is None) == (not args.text):
        raise InputError("give --items FILE --format F, or --text TEXT (one or more), not both")
    if args.items is not None and args.format is None:
        raise InputError(f"--items needs --format (one of {', '.join(SOURCE_FORMATS)})")
    check_output(args.format_out, args.output, None)
    output_guards([args.output], args.format_out, None, [args.model, args.items], args.overwrite)
    if args.items is not None:
        ids, texts = item_file_texts(args.items, args.format, args.encoding, args.max_value_chars,
                                     args.show_progress)
    else:
        ids, texts = [str(position) for position in range(1, len(args.text) + 1)], args.text
    embedder = LatentReasoningEmbedder.from_pretrained(args.model).to(args.device or default_device())
    written = encode_table(embedder, texts, ids, args.output, args.format_out, args.normalize, args.batch_size,
                           args.execution_path, args.model, args.items or "texts", [args.model, args.items],
                           args.overwrite, args.show_progress)
    print(f"wrote {written} ({len(texts)} rows)")
    return 0


@dataclass
class ConvertArguments:
    table: str = help_field("Table to convert: any format export writes, or a .npy / parquet table from another "
                            "tool (see docs/export_formats.md for the id maps it may carry).")
    data: str = help_field("Prepared dataset folder the table belongs to (its ids and row count are checked).")
    output: str = help_field("Table file to write: NAME or NAME.SUFFIX of --format.")
    format: str = help_field(f"One of {', '.join(FORMATS)}.", default="safetensors")
    overwrite: bool = help_field("Replace an existing table that an export wrote.", default=False)


def convert_main(argv: list[str] | None = None) -> int:
    args = parse_recipe(ConvertArguments, list(argv or []), prog="reaemb-trl convert",
                        description="Write an existing item table in another format, without encoding again.")
    from .convert import convert_table

    print(f"wrote {convert_table(args.table, args.data, args.output, args.format, args.overwrite)}")
    return 0
