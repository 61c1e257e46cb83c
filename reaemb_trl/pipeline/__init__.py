"""The end-to-end pipeline: prepare -> LRCL -> CRRL -> export -> compare -> report."""

from .pipeline_config import PipelineConfig
from .runner import PipelineRunner

__all__ = ["PipelineConfig", "PipelineRunner"]
