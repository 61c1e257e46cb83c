"""LatentReasoningConfig: everything needed to rebuild an embedder around its backbone."""

from __future__ import annotations

import types
import typing
from dataclasses import field

from huggingface_hub.dataclasses import strict, type_validator
from transformers import PretrainedConfig

from ..errors import InputError
from .pooling import POOLING_MODES, pooling_mode

DEFAULT_INSTRUCTION = "Represent this item for recommendation."
# How two item embeddings are compared (by the LRCL losses, the CRRL reward, the downstream export's metadata).
SIMILARITIES = ("cosine", "dot")


@strict(accept_kwargs=True)
class LatentReasoningConfig(PretrainedConfig):
    """Config of a `LatentReasoningEmbedder` (saved as config.json in the embedder folder)."""

    model_type = "reaemb_latent_reasoning"

    backbone_name_or_path: str | None = field(
        default=None, metadata={"help": "Folder or hub id the backbone is reloaded from."}
    )
    is_causal: bool = field(default=True, metadata={"help": "Decoder backbone (fast path possible) vs encoder."})
    hidden_size: int = field(default=0, metadata={"help": "Backbone hidden size d (thought module is d x d)."})
    num_thought_tokens: int = field(default=1, metadata={"help": "j latent thought tokens placed after the text."})
    thought_tokens: list[str] | None = field(default=None, metadata={"help": "The j special thought-token strings."})
    pooling: str = field(default="mean", metadata={"help": f"One of POOLING_MODES: {', '.join(POOLING_MODES)}."})
    instruction: str = field(default=DEFAULT_INSTRUCTION, metadata={"help": "Instruction placed before the text."})
    system_prompt: str | None = field(default=None, metadata={
        "help": "System message of chat templates: None keeps the template's default, a string (even '') replaces it."})
    backbone_revision: str | None = field(default=None, metadata={
        "help": "Hub revision (branch, tag or commit) of the backbone."})
    attn_implementation: str | None = field(default=None, metadata={
        "help": "transformers attention implementation of the backbone (eager, sdpa, flash_attention_2, ...)."})
    trust_remote_code: bool = field(default=False, metadata={
        "help": "Run code from the backbone's repository when loading it (off unless asked for)."})
    gguf_file: str | None = field(default=None, metadata={
        "help": "GGUF file inside the backbone folder to load (converted once into a cached transformers folder)."})
    max_length: int = field(default=1024, metadata={"help": "Prompt length limit; the item text is truncated."})
    padding_side: str = field(default="left", metadata={"help": "'left' or 'right' padding of batched prompts."})
    use_thought: bool = field(default=True, metadata={"help": "Default of forward/encode: run the latent thought "
                                                      "(False = plain one-pass embedding, the no-thought ablation)."})
    rope_base: float = field(default=1000.0, metadata={"help": "RoPE base of the thought module's attention."})
    lora: dict | None = field(default=None, metadata={"help": "peft LoraConfig as a dict when LoRA is used."})
    quantization: dict | None = field(default=None, metadata={"help": "BitsAndBytesConfig as a dict (QLoRA)."})
    similarity: str | None = field(default=None, metadata={
        "help": f"The similarity the embedder is trained for, one of {SIMILARITIES}, set by the stage that trained it "
                "(sentence-transformers' similarity_fn_name); None: untrained, or saved before it was recorded."})

    def __post_init__(self, **kwargs):
        self._check_types()
        pooling_mode(self.pooling)  # an unknown name is refused here, not silently pooled some other way
        check_similarity(self.similarity)
        if self.num_thought_tokens < 1:
            raise InputError(f"num_thought_tokens must be >= 1, got {self.num_thought_tokens}")
        if self.padding_side not in ("left", "right"):
            raise InputError(f"padding_side must be 'left' or 'right', got {self.padding_side!r}")
        if self.thought_tokens is None:
            j = self.num_thought_tokens
            self.thought_tokens = ["<|Thought|>"] if j == 1 else [f"<|Thought_{k}|>" for k in range(1, j + 1)]
        super().__post_init__(**kwargs)

    def _check_types(self) -> None:
        """Each field of the annotated type (a float field takes an int), so that a hand-edited or damaged config.json
        fails here, naming the field, rather than deep inside the model. (`strict` cannot check them itself: with
        postponed annotations it sees strings.)"""
        for name, expected in _FIELD_TYPES.items():
            value = getattr(self, name)
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                setattr(self, name, float(value))
                continue
            try:
                type_validator(name, value, expected)
            except TypeError as err:
                raise InputError(str(err)) from None


def check_similarity(similarity: str | None) -> None:
    if similarity is not None and similarity not in SIMILARITIES:
        raise InputError(f"similarity must be one of {SIMILARITIES} (or None: not recorded), got {similarity!r}")


# The annotations of LatentReasoningConfig's own fields, evaluated (the base class's name types it never imports).
_FIELD_TYPES = typing.get_type_hints(types.SimpleNamespace(__annotations__=LatentReasoningConfig.__annotations__),
                                     globalns=globals())
