"""`reaemb-trl crrl --config RECIPE.yaml [--key value ...]`: CRRL from an LRCL folder to an embedder folder."""

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


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
