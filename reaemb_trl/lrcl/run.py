"""LRCL as a library call: `run(LRCLConfig(...))` trains and writes the embedder folder (the CLI and the pipeline
call it; under `accelerate launch` every process calls it)."""

from __future__ import annotations

from ..hub import push_folder
from .lrcl_config import LRCLConfig
from .lrcl_trainer import LRCLTrainer


def run(config: LRCLConfig) -> dict:
    """Train to `config.max_steps` (resuming if asked) and save; returns the output folder and the last metrics."""
    trainer = LRCLTrainer(config)
    metrics = trainer.train()
    if config.push_to_hub and trainer.accelerator.is_main_process:
        metrics["hub_commit"] = push_folder(trainer.output_dir, config.hub_model_id or trainer.output_dir.name)
    return {"output_dir": str(trainer.output_dir), **metrics}
