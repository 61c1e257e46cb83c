"""`reaemb-trl prepare FORMAT --interactions PATH [--items PATH] --output DIR [filters]`: the arguments and
PrepareOptions are parsed like every other sub-command (`TrlParser`: `--key value` with `-` or `_`, or
`--config RECIPE.yaml`); FORMAT may come first without its flag."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from ..recipe import help_field, parse_recipe
from .prepare import PrepareOptions, prepare_dataset
from .readers import FORMATS
from .reward_signal import describe_reward_signal


@dataclass
class PrepareArguments:
    format: str = help_field("Source format: " + "; ".join(f"{name} ({spec.description})"
                                                           for name, spec in FORMATS.items()))
    interactions: str = help_field("Interactions file (reviews, ratings, inter.txt...).")
    output: str = help_field("Prepared folder to write (written atomically).")
    items: str | None = help_field("Item file (meta, u.item, .item...); without it items get empty text.",
                                   default=None)
    overwrite: bool = help_field("Replace an existing prepared folder.", default=False)


def main(argv: list[str] | None = None) -> int:
    argv = list(argv or [])
    if argv and not argv[0].startswith("-"):  # `prepare FORMAT ...`
        argv = ["--format", *argv]
    args, options = parse_recipe(PrepareArguments, argv, prog="reaemb-trl prepare", extra=(PrepareOptions,),
                                 description="Turn a raw recommendation dataset into a prepared folder: items.jsonl, "
                                 "inter.txt, cooccurrence.npz (training prefixes only) and dataset.json. Gzipped "
                                 "inputs are read directly.")
    output = prepare_dataset(args.format, args.interactions, args.items, output=args.output,
                             overwrite=args.overwrite, **dataclasses.asdict(options))
    metadata = json.loads((output / "dataset.json").read_text(encoding="utf-8"))
    counts = metadata["counts"]
    print(f"prepared {output}: {counts['users']:,} users, {counts['items']:,} items, "
          f"{counts['interactions']:,} interactions (sparsity {counts['sparsity']:.4%}, "
          f"mean length {counts['mean_length']:.2f})")
    print(describe_reward_signal(metadata["reward_signal"]))
    return 0
