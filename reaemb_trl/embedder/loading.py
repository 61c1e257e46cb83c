"""LoadingOptions: how an embedder is built around a backbone, in one dataclass shaped like TRL's `ModelConfig`.

transformers' loading keywords (ModelConfig's names: `model_revision`, `dtype`, `attn_implementation`,
`trust_remote_code`), a GGUF file, QLoRA's 4-bit quantisation, the LoRA adapters and the embedder's own settings
(thought tokens, pooling, prompt). `LatentReasoningEmbedder.from_backbone(backbone, options)` is the one builder;
`LRCLConfig` inherits these fields (its recipe keys stay flat, as TRL parses ModelConfig beside the training
arguments), the pipeline's raw arm is built from LRCL's options, and CRRL exposes the two that apply to a saved
folder (`model_revision`, `dtype`) through `option_field`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from ..validation import check_numbers
from .backbone import torch_dtype
from .configuration import DEFAULT_INSTRUCTION
from .pooling import POOLING_MODES, pooling_mode

QUANTIZATION_CHOICES = ("none", "4bit")
PADDING_SIDES = (None, "left", "right")
NUMBER_RULES = {"num_thought_tokens": ">= 1", "max_length": ">= 1", "lora_r": ">= 1", "lora_alpha": "> 0",
                "lora_dropout": "[0, 1)", "lora_top_layers": ">= 1", "seed": ">= 0"}


def _option(text: str, **kwargs):
    return dataclasses.field(metadata={"help": text}, **kwargs)


@dataclass
class LoadingOptions:
    """Everything `from_backbone` needs besides the backbone itself; the defaults build a plain embedder (no LoRA,
    no quantisation, float32 weights unless `dtype` says otherwise)."""

    # How transformers loads the backbone (TRL ModelConfig's names)
    model_revision: str | None = _option("Hub revision (branch, tag or commit) of the model.", default=None)
    dtype: str | None = _option("dtype the backbone is loaded in (float32, bfloat16, float16, auto; default float32: "
                                "LoRA and the thought module train in full precision under autocast).", default=None)
    attn_implementation: str | None = _option("transformers attention implementation (eager, sdpa, flash_attention_2, "
                                              "...; default: transformers' choice).", default=None)
    trust_remote_code: bool = _option("Run code from the backbone's repository (off unless you trust it).",
                                      default=False)
    gguf_file: str | None = _option("A GGUF file inside the backbone folder to load (converted once into a cached "
                                    "transformers folder).", default=None)

    # QLoRA
    quantization: str = _option(f"Backbone weights: {QUANTIZATION_CHOICES} (4bit = QLoRA: bitsandbytes NF4, needs "
                                "bitsandbytes).", default="none")
    bnb_4bit_compute_dtype: str | None = _option("Compute dtype of the 4-bit layers (default float32; LRCL: bfloat16 "
                                                 "under bf16 mixed precision).", default=None)

    # LoRA (peft)
    use_peft: bool = _option("Put LoRA adapters on the backbone.", default=False)
    lora_r: int = _option("LoRA rank.", default=8)
    lora_alpha: int = _option("LoRA scaling numerator.", default=32)
    lora_dropout: float = _option("Dropout on the LoRA input.", default=0.1)
    lora_top_layers: int | None = _option("LoRA only on the last N transformer layers (peft layers_to_transform): "
                                          "the backward pass then stops there; None = every layer.", default=None)
    lora_target_modules: list[str] | None = _option(
        "Module names that get LoRA adapters; None = every attention/MLP projection the backbone has (decoders: "
        "q,k,v,o,gate,up,down; BERT encoders: query,key,value,dense).", default=None)

    # The embedder around the backbone
    num_thought_tokens: int = _option("Latent thought tokens placed after the item text (reference: 1).", default=1)
    pooling: str = _option("How token states become the item embedding: " + "; ".join(
        f"{name} = {mode.description}" for name, mode in POOLING_MODES.items()) + ".", default="mean")
    use_thought: bool = _option("Run the latent thought by default (False: the plain one-pass embedding, saved in "
                                "config.json).", default=True)
    max_length: int = _option("Longest tokenised prompt; longer item texts are truncated (capped at the backbone's "
                              "positions).", default=1024)
    instruction: str | None = _option("Instruction before the item text; None keeps the embedder's default.",
                                      default=None)
    system_prompt: str | None = _option("System message for chat templates: None keeps the template's default; a "
                                        "string (even '') replaces it and shortens every prompt.", default=None)
    padding_side: str | None = _option("'left' or 'right' padding of batched prompts; None: the tokenizer's.",
                                       default=None)
    seed: int = _option("Seed of the thought module's q/k initialisation.", default=0)

    CONFIG_LABEL = "loading options"  # how errors name the config (a class attribute, not an option)

    def __post_init__(self):
        check_numbers(self, self.CONFIG_LABEL, NUMBER_RULES, fields=list(NUMBER_RULES))
        if isinstance(self.lora_target_modules, str):
            self.lora_target_modules = [name.strip() for name in self.lora_target_modules.split(",") if name.strip()]
        for name, allowed in (("quantization", QUANTIZATION_CHOICES), ("padding_side", PADDING_SIDES)):
            if getattr(self, name) not in allowed:
                raise InputError(f"{self.CONFIG_LABEL}: {name}={getattr(self, name)!r} is not one of {allowed}")
        pooling_mode(self.pooling)  # an unknown name is refused here, before anything is loaded
        torch_dtype(self.dtype)
        torch_dtype(self.bnb_4bit_compute_dtype)

    def loading_options(self) -> "LoadingOptions":
        """These options alone, as a `LoadingOptions` (from a config that inherits them, e.g. `LRCLConfig`)."""
        return LoadingOptions(**{f.name: getattr(self, f.name) for f in dataclasses.fields(LoadingOptions)})

    def quantization_config(self):
        """The `BitsAndBytesConfig` of `quantization` (None for full-precision weights)."""
        if self.quantization == "none":
            return None
        import torch
        from transformers import BitsAndBytesConfig

        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                  bnb_4bit_compute_dtype=torch_dtype(self.bnb_4bit_compute_dtype) or torch.float32)

    def lora_settings(self) -> dict[str, Any] | None:
        """The LoRA overrides `backbone.lora_config` turns into a peft `LoraConfig` (None without `use_peft`)."""
        if not self.use_peft:
            return None
        return {"r": self.lora_r, "lora_alpha": self.lora_alpha, "lora_dropout": self.lora_dropout,
                "target_modules": self.lora_target_modules, "top_layers": self.lora_top_layers}

    def embedder_settings(self) -> dict[str, Any]:
        """The `LatentReasoningConfig` fields these options set directly."""
        return {"num_thought_tokens": self.num_thought_tokens, "pooling": self.pooling, "use_thought": self.use_thought,
                "instruction": DEFAULT_INSTRUCTION if self.instruction is None else self.instruction,
                "system_prompt": self.system_prompt, "gguf_file": self.gguf_file,
                "backbone_revision": self.model_revision, "attn_implementation": self.attn_implementation,
                "trust_remote_code": self.trust_remote_code}


def option_field(name: str, help: str | None = None, default: Any = dataclasses.MISSING):
    """`LoadingOptions`' field `name` for a config that exposes only some of the options (CRRL): the same default
    and help, unless the config words them for its own meaning."""
    original = LoadingOptions.__dataclass_fields__[name]
    return dataclasses.field(default=original.default if default is dataclasses.MISSING else default,
                             metadata={**original.metadata, **({"help": help} if help else {})})
