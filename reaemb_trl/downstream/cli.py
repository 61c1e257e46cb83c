"""`reaemb-trl evaluate` and `reaemb-trl compare`: their arguments and DownstreamConfig are parsed like every
other sub-command (`TrlParser`: `--key value` with `-` or `_`, or `--config RECIPE.yaml`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields

from ..errors import InputError
from ..recipe import help_field, parse_recipe
from .config import DownstreamConfig
from .protocol import PROTOCOLS
from .registry import RECOMMENDERS, setting_owners

# DownstreamConfig fields that compare sets per run from its own lists
_PER_RUN = {"--recommender": "--recommenders", "--protocol": "--protocols", "--seed": "--seeds"}


@dataclass
class EvaluateArguments:
    data: str = help_field("Prepared dataset folder.")
    output: str = help_field("metrics.json to write (atomically).")
    embeddings: str | None = help_field("Item table: any format export writes (safetensors, npy, parquet, "
                                        ".itememb), or a .npy / parquet table from another tool lined up with the "
                                        "dataset's ids; without it: learned ID embeddings.", default=None)
    overwrite: bool = help_field("Replace an existing metrics file that evaluate wrote.", default=False)


@dataclass
class CompareArguments:
    data: str = help_field("Prepared dataset folder.")
    output: str = help_field("Output folder (written atomically).")
    runs: list[str] = field(default_factory=list, metadata={"help": "Embedding files to compare, as NAME=FILE."})
    id_only: bool = help_field("Add learned ID embeddings as a run ('id-only').", default=False)
    recommenders: list[str] = field(default_factory=lambda: ["sasrec", "gru4rec"], metadata={
        "help": f"Recommenders to train: {', '.join(RECOMMENDERS)} (pop = popularity baseline), or ones published "
                "under the reaemb_trl.recommenders entry points."})
    seeds: int = help_field("Seeds per combination: 0 .. N-1.", default=3)
    protocols: list[str] = field(default_factory=lambda: ["sampled"], metadata={
        "help": f"One or both of {', '.join(PROTOCOLS)}. Each model is trained once: early stopping and the best "
                "checkpoint follow validation NDCG@10 under the FIRST protocol listed, then test metrics are read "
                "under every listed protocol from that checkpoint."})
    overwrite: bool = help_field("Replace an existing output folder that compare wrote.", default=False)


def _refuse_own_settings_as_flags(argv: list[str]) -> None:
    """`--num_layers 3` once set every recommender's blocks; each recommender has its own settings now, so such a
    flag gets the new spelling instead of argparse's bare "unrecognized arguments"."""
    shared = {f.name for f in fields(DownstreamConfig)}
    for arg in argv:
        key = arg[2:].split("=", 1)[0].replace("-", "_")
        if not arg.startswith("--") or key in shared:
            continue
        owned = setting_owners(key)
        if owned:
            owners, example = owned
            raise InputError(f"--{key} is a setting of {', '.join(owners)}, given per recommender: "
                             f"--recommender_kwargs '{example}'")


def evaluate_main(argv: list[str] | None = None) -> int:
    from .evaluate import evaluate

    argv = list(argv or [])
    _refuse_own_settings_as_flags(argv)
    config, args = parse_recipe(DownstreamConfig, argv, prog="reaemb-trl evaluate",
                                extra=(EvaluateArguments,), description="Train and test one recommender.")
    record = evaluate(args.data, args.embeddings, config, output=args.output, overwrite=args.overwrite)
    print(json.dumps({"overall": record["overall"], "epochs_run": record["epochs_run"],
                      "wall_time_s": record["wall_time_s"]}, indent=2))
    return 0


def _parse_runs(pairs: list[str]) -> dict[str, str]:
    runs = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--runs {pair!r}: expected NAME=FILE")
        if name in runs:
            raise InputError(f"--runs: the name {name!r} is given twice")
        runs[name] = path
    return runs


def compare_main(argv: list[str] | None = None) -> int:
    from .compare import compare

    argv = list(argv or [])
    for single, plural in _PER_RUN.items():
        if single in argv or single.replace("-", "_") in argv:
            raise InputError(f"compare sets {single} per run: use {plural}")
    _refuse_own_settings_as_flags(argv)
    config, args = parse_recipe(DownstreamConfig, argv, prog="reaemb-trl compare", extra=(CompareArguments,),
                                description="Compare item tables across recommenders, seeds and protocols.")
    results = compare(args.data, _parse_runs(args.runs), args.output, args.recommenders, args.seeds, args.protocols,
                      id_only=args.id_only, config=config, overwrite=args.overwrite)
    print(f"{len(results['runs'])} runs written to {args.output}/results.md")
    return 0
