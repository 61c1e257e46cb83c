"""`reaemb-trl lrcl --config RECIPE.yaml [--key value ...]`; also `accelerate launch -m reaemb_trl.cli lrcl ...`."""

from __future__ import annotations

import json

from accelerate import PartialState

from ..recipe import parse_recipe
from .lrcl_config import LRCLConfig
from .run import run


def main(argv: list[str]) -> int:
    metrics = run(parse_recipe(LRCLConfig, argv, prog="reaemb-trl lrcl"))
    if PartialState().is_main_process:
        print(json.dumps(metrics))
    return 0
