"""`reaemb-trl evaluate` and `reaemb-trl compare`: DownstreamConfig fields become --options."""

from __future__ import annotations

import argparse
import dataclasses
import json

from ..errors import InputError
from .config import RECOMMENDERS, DownstreamConfig
from .protocol import PROTOCOLS


def _add_config_options(parser: argparse.ArgumentParser, skip: set[str]) -> None:
    for option in dataclasses.fields(DownstreamConfig):
        if option.name in skip:
            continue
        flag, help_ = "--" + option.name.replace("_", "-"), option.metadata["help"]
        if option.type in (bool, "bool"):
            if option.default:
                negative = "--no-" + option.name.removeprefix("show_").replace("_", "-")
                parser.add_argument(negative, dest=option.name, action="store_false", help=help_)
            else:
                parser.add_argument(flag, dest=option.name, action="store_true", help=help_)
            continue
        kind = {"int": int, "float": float, "str": str}[str(option.type)]
        parser.add_argument(flag, dest=option.name, type=kind, default=option.default,
                            help=f"{help_} (default: {option.default})")


def _config(args: argparse.Namespace, **fixed) -> DownstreamConfig:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(DownstreamConfig) if hasattr(args, f.name)}
    return DownstreamConfig(**{**values, **fixed})


def evaluate_main(argv: list[str] | None = None) -> int:
    from .evaluate import evaluate

    parser = argparse.ArgumentParser(prog="reaemb-trl evaluate", description="Train and test one recommender.")
    parser.add_argument("--data", required=True, help="Prepared dataset folder.")
    parser.add_argument("--embeddings", help="Item embedding file (safetensors); without it: learned ID embeddings.")
    parser.add_argument("--output", required=True, help="metrics.json to write (atomically).")
    parser.add_argument("--recommender", required=True, choices=RECOMMENDERS, help="Recommender to train.")
    parser.add_argument("--protocol", default="sampled", choices=PROTOCOLS, help="Candidate set for ranking.")
    _add_config_options(parser, skip={"recommender", "protocol"})
    args = parser.parse_args(argv)
    record = evaluate(args.data, args.embeddings, _config(args), output=args.output)
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

    parser = argparse.ArgumentParser(prog="reaemb-trl compare",
                                     description="Compare item tables across recommenders, seeds and protocols.")
    parser.add_argument("--data", required=True, help="Prepared dataset folder.")
    parser.add_argument("--runs", nargs="*", default=[], metavar="NAME=FILE", help="Embedding files to compare.")
    parser.add_argument("--id-only", action="store_true", help="Add learned ID embeddings as a run ('id-only').")
    parser.add_argument("--recommenders", nargs="+", default=["sasrec", "gru4rec"], choices=RECOMMENDERS,
                        help="Recommenders to train (pop = popularity baseline).")
    parser.add_argument("--seeds", type=int, default=3, help="Seeds per combination: 0 .. N-1.")
    parser.add_argument("--protocol", nargs="+", default=["sampled"], choices=PROTOCOLS, dest="protocols",
                        help="One or both protocols. Each model is trained once: early stopping and the best "
                        "checkpoint follow validation NDCG@10 under the FIRST protocol listed, then test metrics are "
                        "read under every listed protocol from that checkpoint.")
    parser.add_argument("--output", required=True, help="Output folder (written atomically).")
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing output folder.")
    _add_config_options(parser, skip={"recommender", "protocol", "seed"})
    args = parser.parse_args(argv)
    results = compare(args.data, _parse_runs(args.runs), args.output, args.recommenders, args.seeds, args.protocols,
                      id_only=args.id_only, config=_config(args), overwrite=args.overwrite)
    print(f"{len(results['runs'])} runs written to {args.output}/results.md")
    return 0
