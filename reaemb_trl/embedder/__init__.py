"""The latent-reasoning item embedder: backbone + thought module, fast and reference paths, LoRA/QLoRA."""

from .configuration import DEFAULT_INSTRUCTION, LatentReasoningConfig
from .modeling import EmbedderOutput, LatentReasoningEmbedder, PrefixState, is_causal_config
from .prefix_cache import PrefixCache
from .prompts import PromptBuilder, pad_prompts
from .thought_module import ThoughtModule

__all__ = [
    "DEFAULT_INSTRUCTION",
    "EmbedderOutput",
    "LatentReasoningConfig",
    "LatentReasoningEmbedder",
    "PrefixCache",
    "PrefixState",
    "PromptBuilder",
    "ThoughtModule",
    "is_causal_config",
    "pad_prompts",
]
