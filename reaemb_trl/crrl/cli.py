"""`reaemb-trl crrl --config RECIPE.yaml [--key value ...]`: CRRL from an LRCL folder to an embedder folder;
`reaemb-trl cooc-sft` (same recipe keys): its supervised control on the same positives and negatives."""

from __future__ import annotations

import json

from ..recipe import parse_recipe
from .crrl_config import CRRLConfig
from .run import run


def main(argv: list[str]) -> int:
    args = parse_recipe(CRRLConfig, argv, prog="reaemb-trl crrl")
    metrics = run(args)
    print(json.dumps(metrics, indent=2))
    return 0


def cooc_sft_main(argv: list[str]) -> int:
    from .cooc_sft import run_cooc_sft

    args = parse_recipe(CRRLConfig, argv, prog="reaemb-trl cooc-sft",
                        description="CRRL's supervised control: the recipe's CRRL positives and negatives as a "
                        "cross-entropy loss on the thought module, for as many item visits as CRRL.")
    metrics = run_cooc_sft(args)
    print(json.dumps({key: value for key, value in metrics.items() if key != "log_history"}, indent=2))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
