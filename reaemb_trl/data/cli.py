"""`reaemb-trl prepare FORMAT --interactions PATH [--items PATH] --output DIR [filters]`."""

from __future__ import annotations

import argparse
import dataclasses
import json

from .prepare import PrepareOptions, prepare_dataset
from .readers import FORMATS


def build_parser() -> argparse.ArgumentParser:
    formats = "\n".join(f"  {name:<11} {spec.description}" for name, spec in FORMATS.items())
    parser = argparse.ArgumentParser(
        prog="reaemb-trl prepare",
        description="Turn a raw recommendation dataset into a prepared folder: items.jsonl, inter.txt, "
                    "cooccurrence.npz (training prefixes only) and dataset.json. Gzipped inputs are read directly.",
        epilog=f"formats:\n{formats}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("format", metavar="FORMAT", help=f"source format: {', '.join(FORMATS)}")
    parser.add_argument("--interactions", required=True, help="Interactions file (reviews, ratings, inter.txt...).")
    parser.add_argument("--items", help="Item file (meta, u.item, .item...); without it items get empty text.")
    parser.add_argument("--output", required=True, help="Prepared folder to write (written atomically).")
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing non-empty output folder.")
    parser.add_argument("--no-progress", dest="show_progress", action="store_false", help="Hide progress bars.")
    for option in dataclasses.fields(PrepareOptions):
        if option.name == "show_progress":
            continue
        flag = "--" + option.name.replace("_", "-")
        if option.type in (bool, "bool"):
            parser.add_argument(flag, dest=option.name, action="store_true", help=option.metadata["help"])
        elif option.type == "bool | None":  # on, off, or left to the format
            parser.add_argument(flag, dest=option.name, action=argparse.BooleanOptionalAction, default=None,
                                help=option.metadata["help"])
        else:
            kind = float if "float" in str(option.type) else str if "str" in str(option.type) else int
            default = "" if option.default is None else f" (default: {option.default})"
            parser.add_argument(flag, dest=option.name, type=kind, default=option.default,
                                help=option.metadata["help"] + default)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    output = prepare_dataset(args.pop("format"), args.pop("interactions"), args.pop("items"),
                             output=args.pop("output"), overwrite=args.pop("overwrite"), **args)
    counts = json.loads((output / "dataset.json").read_text(encoding="utf-8"))["counts"]
    print(f"prepared {output}: {counts['users']:,} users, {counts['items']:,} items, "
          f"{counts['interactions']:,} interactions (sparsity {counts['sparsity']:.4%}, "
          f"mean length {counts['mean_length']:.2f})")
    return 0
