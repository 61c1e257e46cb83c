"""`reaemb-trl lrcl --config RECIPE.yaml [--key value ...]`; also `accelerate launch -m reaemb_trl.cli lrcl ...`."""

from __future__ import annotations

import json

from ..recipe import parse_recipe
from .lrcl_config import LRCLConfig
from .lrcl_trainer import LRCLTrainer


def main(argv: list[str]) -> int:
    config = parse_recipe(LRCLConfig, argv, prog="reaemb-trl lrcl")
    trainer = LRCLTrainer(config)
    metrics = trainer.train()
    if trainer.accelerator.is_main_process:
        print(json.dumps({"output_dir": str(trainer.output_dir), **metrics}))
    return 0
