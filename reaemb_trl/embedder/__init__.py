"""The latent-reasoning item embedder: backbone + thought module, fast and reference paths, LoRA/QLoRA."""

from .backbone import BUNDLED_BACKBONES, BUNDLED_MINILM, BUNDLED_SMOLLM2, is_causal_config, resolve_backbone
from .configuration import DEFAULT_INSTRUCTION, LatentReasoningConfig
from .modeling import EmbedderOutput, LatentReasoningEmbedder
from .pooling import POOLING_MODES, PoolingMode, register_pooling
from .prefix_cache import PrefixCache
from .prefix_state import PrefixState
from .prompts import PromptBuilder, pad_prompts
from .shared_pass import encode_sharing_pass1, shares_pass1
from .thought_module import ThoughtModule

__all__ = [
    "BUNDLED_BACKBONES",
    "BUNDLED_MINILM",
    "BUNDLED_SMOLLM2",
    "POOLING_MODES",
    "PoolingMode",
    "register_pooling",
    "resolve_backbone",
    "DEFAULT_INSTRUCTION",
    "EmbedderOutput",
    "LatentReasoningConfig",
    "LatentReasoningEmbedder",
    "PrefixCache",
    "PrefixState",
    "PromptBuilder",
    "ThoughtModule",
    "is_causal_config",
    "encode_sharing_pass1",
    "pad_prompts",
    "shares_pass1",
]
