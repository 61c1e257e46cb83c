"""reaemb_trl: ReaEmb item embeddings from LLMs (latent-reasoning contrastive learning + GRPO on TRL).

Heavy submodules load on first use, so `import reaemb_trl` and `reaemb-trl --help` stay fast.
"""

from __future__ import annotations

import importlib

from . import offline_imports

offline_imports.install()  # before any module of the package imports peft (which imports bitsandbytes)

__version__ = "0.1.0"

_EXPORTS = {
    "PreparedDataset": "reaemb_trl.data",
    "prepare_dataset": "reaemb_trl.data",
    "LatentReasoningEmbedder": "reaemb_trl.embedder",
    "LatentReasoningConfig": "reaemb_trl.embedder",
    "LRCLConfig": "reaemb_trl.lrcl",
    "LRCLTrainer": "reaemb_trl.lrcl",
    "CRRLConfig": "reaemb_trl.crrl",
    "EmbeddingGRPOTrainer": "reaemb_trl.crrl",
    "CooccurrenceRewardModel": "reaemb_trl.crrl",
    "register_reward": "reaemb_trl.rewards",
    "get_reward": "reaemb_trl.rewards",
    "available_rewards": "reaemb_trl.rewards",
    "PipelineConfig": "reaemb_trl.pipeline",
    "PipelineRunner": "reaemb_trl.pipeline",
    # each stage as one library call (what its sub-command and the pipeline call)
    "run_lrcl": "reaemb_trl.lrcl:run",
    "run_crrl": "reaemb_trl.crrl:run",
    "export_item_tables": "reaemb_trl.export",
    "compare": "reaemb_trl.downstream",
    "evaluate": "reaemb_trl.downstream",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        module, _, attribute = _EXPORTS[name].partition(":")
        return getattr(importlib.import_module(module), attribute or name)
    raise AttributeError(f"module 'reaemb_trl' has no attribute {name!r}")
