"""`reaemb-trl prepare FORMAT --interactions PATH [--items PATH] --output DIR [filters]`: the arguments and
PrepareOptions are parsed like every other sub-command (`TrlParser`: `--key value` with `-` or `_`, or
`--config RECIPE.yaml`); FORMAT may come first without its flag. `--interactions bundled` (and `--items bundled`)
name the bundled sample's files, as in recipes."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from ..errors import InputError
from ..recipe import help_field, parse_recipe
from .prepare import BUNDLED, PrepareOptions, prepare_dataset, sample_dataset_files
from .readers import FORMATS
from .reward_signal import describe_reward_signal


@dataclass
class PrepareArguments:
    interactions: str = help_field(f"Interactions file (reviews, ratings, inter.txt...), or `{BUNDLED}`: the "
                                   f"bundled Office 2014 sample (format seqjson).")
    output: str = help_field("Prepared folder to write (written atomically).")
    format: str | None = help_field("Source format: " + "; ".join(f"{name} ({spec.description})"
                                                                  for name, spec in FORMATS.items())
                                    + f". Needed unless --interactions is `{BUNDLED}` (seqjson).", default=None)
    items: str | None = help_field(f"Item file (meta, u.item, .item...), or `{BUNDLED}`; without it items get empty "
                                   f"text. Default with `--interactions {BUNDLED}`: the bundled item file.",
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
    output = prepare_dataset(*_resolve_bundled(args), output=args.output, overwrite=args.overwrite,
                             **dataclasses.asdict(options))
    metadata = json.loads((output / "dataset.json").read_text(encoding="utf-8"))
    counts = metadata["counts"]
    print(f"prepared {output}: {counts['users']:,} users, {counts['items']:,} items, "
          f"{counts['interactions']:,} interactions (sparsity {counts['sparsity']:.4%}, "
          f"mean length {counts['mean_length']:.2f})")
    print(describe_reward_signal(metadata["reward_signal"]))
    return 0


def _resolve_bundled(args: PrepareArguments) -> tuple[str, str, str | None]:
    """(format, interactions, items) with `bundled` replaced by the sample's files, as recipes do."""
    inter_sample, items_sample = map(str, sample_dataset_files())
    if args.interactions != BUNDLED:
        if args.format is None:
            raise InputError("reaemb-trl prepare: give the source FORMAT (first argument or --format), or "
                             f"--interactions {BUNDLED} for the bundled sample")
        return args.format, args.interactions, items_sample if args.items == BUNDLED else args.items
    if args.format not in (None, "seqjson"):
        raise InputError(f"--interactions {BUNDLED}: the bundled sample is in format seqjson, not {args.format!r}")
    return "seqjson", inter_sample, items_sample if args.items in (None, BUNDLED) else args.items
