"""`reaemb-trl export --model DIR --data PREPARED_DIR --output FILE [--format F] [--normalize] [--pca D] ...`,
`reaemb-trl encode` (new items or texts) and `reaemb-trl convert` (a table in another format).

`--model` / `--output` may be repeated in pairs: folders that share pass 1 (an LRCL folder and the CRRL folder
trained from it) are then encoded from one pass 1 per batch."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..data.readers import FORMATS as SOURCE_FORMATS
from ..data.text import DEFAULT_MAX_VALUE_CHARS
from ..embedder.modeling import EXECUTION_PATHS
from ..errors import InputError
from ..recipe import help_field, parse_recipe
from .export import ExportOptions, export_folders
from .formats import TABLE_FORMATS, recbole_config_path


@dataclass
class ExportArguments:
    model: list[str] = field(default_factory=list, metadata={
        "action": "extend",  # --model A --model B, or --model A B
        "help": "Embedder folder (LatentReasoningEmbedder.save_pretrained); repeat with --output for several folders "
                "in one run."})
    data: str | None = help_field("Prepared dataset folder (reaemb-trl prepare).", default=None)
    output: list[str] = field(default_factory=list, metadata={
        "action": "extend",
        "help": "Table file to write, e.g. items.safetensors; one per --model, in the same order. Other formats take "
                "NAME or NAME.SUFFIX (items.npy, items.parquet, items.itememb)."})
    format: str = help_field(f"One of {', '.join(TABLE_FORMATS)}: safetensors (default) keeps the padding row 0; npy, "
                             "parquet and recbole (NAME.itememb + NAME.recbole.yaml) hold items 1..N only.",
                             default="safetensors")
    normalize: bool = help_field("L2-normalise every item row (default: rows as the model gives them).", default=False)
    pca: int | None = help_field("Also write a PCA-reduced table FILE.pcaD.safetensors (--format safetensors only).",
                                 default=None)
    batch_size: int = help_field("Items per forward pass.", default=32)
    execution_path: str | None = help_field("How the two passes run: fast or reference (default: fast for decoders; "
                                            "encoders always run reference).", default=None)
    num_items: int | None = help_field("Refuse a dataset that does not have exactly this many items.", default=None)
    overwrite: bool = help_field("Replace existing tables that an export wrote (never other files, never inputs).",
                                 default=False)
    device: str | None = help_field("torch device (default: cuda when available, else cpu).", default=None)
    no_progress: bool = help_field("Hide the progress bars.", default=False)


def main(argv: list[str] | None = None) -> int:
    args = parse_recipe(ExportArguments, list(argv or []), prog="reaemb-trl export",
                        description="Embed every item of a prepared dataset with a trained embedder folder and write "
                                    "a table: safetensors (tensor 'embeddings', row 0 = padding, row i = item i), npy, "
                                    "parquet or a RecBole atomic file, with the source item ids and the metadata "
                                    "beside it (docs/export_formats.md).")
    for name in ("model", "data", "output"):
        if not getattr(args, name):
            raise InputError(f"reaemb-trl export: --{name} is required")
    if args.execution_path not in (None, *EXECUTION_PATHS):
        raise InputError(f"--execution-path {args.execution_path!r}: one of {', '.join(EXECUTION_PATHS)}")
    options = ExportOptions(pca=args.pca, batch_size=args.batch_size, execution_path=args.execution_path,
                            num_items=args.num_items, table_format=args.format, normalize=args.normalize,
                            overwrite=args.overwrite, show_progress=not args.no_progress)
    for file in export_folders(args.model, args.data, args.output, options, args.device):
        print(f"wrote {file}")  # the command's output: the files it wrote
        if args.format == "recbole":
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
    format_out: str = help_field(f"Table format: one of {', '.join(TABLE_FORMATS)} (as export).", default="safetensors")
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
    from .new_items import encode_folder

    written, rows = encode_folder(args.model, args.output, args.items, args.format, args.text, args.format_out,
                                  args.normalize, args.max_value_chars, args.encoding, args.batch_size,
                                  args.execution_path, args.device, args.overwrite, args.show_progress)
    print(f"wrote {written} ({rows} rows)")
    return 0


@dataclass
class ConvertArguments:
    table: str = help_field("Table to convert: any format export writes, or a .npy / parquet table from another "
                            "tool (see docs/export_formats.md for the id maps it may carry).")
    data: str = help_field("Prepared dataset folder the table belongs to (its ids and row count are checked).")
    output: str = help_field("Table file to write: NAME or NAME.SUFFIX of --format.")
    format: str = help_field(f"One of {', '.join(TABLE_FORMATS)}.", default="safetensors")
    overwrite: bool = help_field("Replace an existing table that an export wrote.", default=False)


def convert_main(argv: list[str] | None = None) -> int:
    args = parse_recipe(ConvertArguments, list(argv or []), prog="reaemb-trl convert",
                        description="Write an existing item table in another format, without encoding again.")
    from .convert import convert_table

    print(f"wrote {convert_table(args.table, args.data, args.output, args.format, args.overwrite)}")
    return 0
