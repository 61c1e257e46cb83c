"""Settings of the LRCL stage; the defaults are the reference settings (docs/method.md, section 1)."""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from dataclasses import dataclass

from transformers import TrainingArguments

from ..embedder.loading import LoadingOptions
from ..embedder.modeling import EXECUTION_PATHS
from ..errors import InputError
from ..recipe import help_field
from ..validation import check_numbers

MIXED_PRECISION_CHOICES = ("auto", "no", "fp16", "bf16")
EXECUTION_PATH_CHOICES = ("auto", *EXECUTION_PATHS)
OPTIMIZER_CHOICES = ("adamw_torch", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit")
# TrainingArguments' eval_strategy / save_strategy values that LRCL honours: it counts optimizer steps, not epochs.
STRATEGY_CHOICES = ("no", "steps")
# The range of every numeric option (validation.check_numbers also checks that each is a finite int / float).
# LoadingOptions checks its own (lora_r, max_length, ...).
NUMBER_RULES = {
    "view_drop_ratio": "[0, 1)", "temperature": "> 0", "min_temperature": "> 0",
    "learning_rate": ">= 0", "weight_decay": ">= 0", "warmup_steps": ">= 0", "max_steps": ">= -1",
    "num_train_epochs": "> 0",
    "per_device_train_batch_size": ">= 1", "gradient_accumulation_steps": ">= 1", "max_grad_norm": ">= 0",
    "seed": ">= 0", "eval_steps": ">= 0", "eval_items": ">= 0", "eval_batch_size": ">= 1", "logging_steps": ">= 1",
    "save_steps": ">= 0", "save_total_limit": ">= 1",
}


def _flag_field(text: str):
    """A bool | None option that a bare `--flag` turns on, as TrainingArguments' `--bf16` does; unset stays None.
    (HfArgumentParser accepts a bare flag only for a non-None default; these keys are passed to add_argument.)"""
    return dataclasses.field(default=None, metadata={"help": text, "nargs": "?", "const": True})


@dataclass
class LRCLConfig(LoadingOptions):
    """One LRCL run. Reference: 4 GPUs x 64 items x 2 accumulation steps = 512 items per optimizer step. The
    backbone's loading options and the embedder's settings are `LoadingOptions`' fields (flat recipe keys)."""

    CONFIG_LABEL = "LRCL config"
    # Keys renamed so that each name says one thing: an old key is refused with the new name (recipe.parse_recipe)
    RENAMED_KEYS = {"gradient_checkpointing": "activation_checkpointing"}

    # Inputs and outputs (the backbone's loading options and the embedder's settings: LoadingOptions' fields)
    model_name_or_path: str | None = help_field("Backbone: bundled-smollm2, bundled-minilm, a local folder (decoder or "
                                                "encoder) or a hub name.", default=None)
    dataset_dir: str | None = help_field("Prepared dataset folder (`reaemb-trl prepare`).", default=None)
    output_dir: str = help_field("Where the trained embedder, the logs and the checkpoints go.", default="outputs/lrcl")
    overwrite_output_dir: bool = help_field("Replace an output folder that already holds a run.", default=False)

    # Embedder
    no_thought: bool = help_field("Bypass the thought module (the LLMEmb-style ablation).", default=False)
    execution_path: str = help_field(f"{EXECUTION_PATH_CHOICES}: auto = the exact fast path on decoders (prefix KV "
                                     "cache reused by pass 2), the plain two-pass reference path on encoders.",
                                     default="auto")
    activation_checkpointing: bool = help_field("Recompute backbone activations in the backward pass to save memory "
                                                "(TrainingArguments' name; runs the reference path: the fast path "
                                                "needs the KV cache).", default=False)
    # LoadingOptions' fields as LRCL sets them: it always trains LoRA adapters (the backbone is saved by reference),
    # and `no_thought` decides whether the thought runs.
    use_peft: bool = help_field("Always on in LRCL (not a recipe key).", default=True, init=False)
    use_thought: bool = help_field("not no_thought (not a recipe key).", default=True, init=False)

    # Views and loss
    view_drop_ratio: float = help_field("Share of an item's attributes dropped in each view: int(ratio * k).",
                                        default=0.4)
    loss: str = help_field("Contrastive loss by name: soft_clip (reference) or infonce.", default="soft_clip")
    temperature: float | None = help_field("Initial temperature; None takes the loss's default (soft_clip 1.0, "
                                           "infonce 0.05).", default=None)
    learnable_temperature: bool = help_field("Train the temperature with the model.", default=True)
    min_temperature: float = help_field("Lower clamp of the temperature.", default=1e-3)
    gather_negatives: bool = help_field("Gather embeddings across processes (with gradient) so the negatives come from "
                                        "the global batch.", default=True)

    # Optimisation
    optim: str = help_field(f"Optimizer: {OPTIMIZER_CHOICES}; the 8-bit and paged ones come from bitsandbytes (QLoRA).",
                            default="adamw_torch")
    learning_rate: float = help_field("Peak learning rate of AdamW.", default=2e-4)
    weight_decay: float = help_field("AdamW weight decay.", default=0.0)
    lr_scheduler_type: str = help_field("A transformers.get_scheduler name (linear, cosine, constant, ...).",
                                        default="linear")
    warmup_steps: float = help_field("Learning-rate warm-up, as TrainingArguments reads it: a whole number >= 1 is "
                                     "optimizer steps, a number below 1 a share of the run's steps. The default 0.1 "
                                     "scales with the run, so short runs reach the peak learning rate too.",
                                     default=0.1)
    max_steps: int = help_field("Optimizer steps to train (the reference: 2000); -1 trains num_train_epochs instead, "
                                "as in TrainingArguments.", default=2000)
    num_train_epochs: float | None = help_field("Passes over the training items, used when max_steps is -1 "
                                                "(TrainingArguments' meaning; may be fractional).", default=None)
    per_device_train_batch_size: int = help_field(
             "Items per process per micro-step; each item gives two views, the other items of the global batch are "
             "its negatives. Items per optimizer step = this x processes x gradient_accumulation_steps (CRRL's "
             "counts completions instead, items x num_generations, as GRPO does).", default=64)
    gradient_accumulation_steps: int = help_field("Micro-steps per optimizer step.", default=2)
    max_grad_norm: float = help_field("Gradient clipping norm; 0 turns clipping off.", default=1.0)
    bf16: bool | None = _flag_field("bfloat16 mixed precision; a bare --bf16 turns it on (TrainingArguments' flag). "
                                    "Neither bf16 nor fp16 set: bf16 on GPUs that have it, else fp16 on GPU, fp32 on "
                                    "CPU (an `accelerate launch` setting wins); --bf16 false forces full precision.")
    fp16: bool | None = _flag_field("float16 mixed precision; a bare --fp16 turns it on (TrainingArguments' flag).")
    mixed_precision: str = help_field(f"Deprecated, use bf16 / fp16: {MIXED_PRECISION_CHOICES}.", default="auto")
    seed: int = help_field("Seed of the initialisation (thought module, LoRA), the item order, the views and the "
                           "held-out items.", default=42)

    # Evaluation, logging, checkpoints
    eval_strategy: str = help_field(f"When to evaluate on the held-out items during training: {STRATEGY_CHOICES} "
                                    "(TrainingArguments' key; `no` = only before and after training).",
                                    default="steps")
    eval_steps: int = help_field("With eval_strategy steps: evaluate every N optimizer steps (0 = only before and "
                                 "after).", default=200)
    eval_items: int = help_field("Items held out of training for evaluation.", default=256)
    eval_batch_size: int = help_field("Texts per forward pass during evaluation.", default=64)
    logging_steps: int = help_field("Log the training loss every N optimizer steps.", default=10)
    report_to: list[str] = help_field("Trackers for accelerate (tensorboard, wandb, ...); none or an empty list for "
                                      "none. Default tensorboard in both stages: a dependency of this package, it "
                                      "shows the curves while a run trains (the curves PNG comes only at the end).",
                                      default_factory=lambda: ["tensorboard"])
    run_name: str | None = help_field("Run name the trackers show (default: lrcl).", default=None)
    push_to_hub: bool = help_field("Upload the output folder (with its model card, without checkpoints) to the Hub "
                                   "at the end.", default=False)
    hub_model_id: str | None = help_field("Hub repository for push_to_hub (default: the output folder's name).",
                                          default=None)
    logging_dir: str | None = help_field("Where trackers write (default: output_dir/logs).", default=None)
    save_strategy: str = help_field(f"When to write checkpoints: {STRATEGY_CHOICES} (TrainingArguments' key; `no` = "
                                    "never, the finished model is saved either way).", default="steps")
    save_steps: int = help_field("With save_strategy steps: checkpoint every N optimizer steps (0 = never).",
                                 default=500)
    save_total_limit: int = help_field("Checkpoints kept (the oldest are deleted).", default=2)
    resume_from_checkpoint: str | None = help_field("A checkpoint-N folder, or `latest` / `true` for the newest "
                                                    "one under output_dir.", default=None)

    def __post_init__(self):
        check_numbers(self, "LRCL config", NUMBER_RULES)
        self.use_thought = not self.no_thought
        super().__post_init__()
        if self.max_steps == 0:
            raise InputError("LRCL config: max_steps must be >= 1, got 0 (or -1: train num_train_epochs)")
        if self.max_steps == -1 and self.num_train_epochs is None:
            raise InputError("LRCL config: max_steps -1 trains num_train_epochs, which is not set")
        if self.max_steps > 0 and self.num_train_epochs is not None:  # TrainingArguments would ignore the epochs
            raise InputError(f"LRCL config: num_train_epochs={self.num_train_epochs} is ignored while "
                             f"max_steps={self.max_steps}; set max_steps -1 to train by epochs")
        for name in ("eval_strategy", "save_strategy"):
            if getattr(self, name) not in STRATEGY_CHOICES:
                raise InputError(f"LRCL config: {name}={getattr(self, name)!r} is not one of {STRATEGY_CHOICES} "
                                 "(LRCL counts optimizer steps, not epochs)")
        # The trainer evaluates / saves by steps when eval_steps / save_steps > 0: `no` is a step count of 0.
        if self.eval_strategy == "no":
            self.eval_steps = 0
        if self.save_strategy == "no":
            self.save_steps = 0
        if isinstance(self.report_to, str):
            self.report_to = [name.strip() for name in self.report_to.split(",") if name.strip()]
        self.report_to = [name for name in self.report_to if name != "none"]
        if self.bf16 and self.fp16:
            raise InputError("LRCL config: bf16 and fp16 are both set; choose one")
        if self.mixed_precision != "auto":
            warnings.warn("LRCL config: mixed_precision is deprecated; use bf16: true / fp16: true (TrainingArguments' "
                          "names)", FutureWarning, stacklevel=2)
        choices = {"mixed_precision": MIXED_PRECISION_CHOICES, "execution_path": EXECUTION_PATH_CHOICES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise InputError(f"LRCL config: {name}={getattr(self, name)!r} is not one of {allowed}")
        from .losses import LOSSES

        if self.loss not in LOSSES:
            raise InputError(f"LRCL config: unknown loss {self.loss!r} (known: {sorted(LOSSES)})")
        if self.activation_checkpointing and self.execution_path == "fast":
            raise InputError("LRCL config: activation_checkpointing turns the KV cache off, which the fast path needs "
                             "(use execution_path auto or reference)")

    # TrainingArguments' own reading of warmup_steps (>= 1: steps; below 1: a share of num_training_steps).
    get_warmup_steps = TrainingArguments.get_warmup_steps

    def total_steps(self, num_train_items: int, num_processes: int) -> int:
        """Optimizer steps of the run: max_steps, or with max_steps -1 enough steps for num_train_epochs passes over
        `num_train_items` at per_device_train_batch_size x num_processes x gradient_accumulation_steps items a step."""
        if self.max_steps > 0:
            return self.max_steps
        items_per_step = self.per_device_train_batch_size * num_processes * self.gradient_accumulation_steps
        return max(1, math.ceil(self.num_train_epochs * num_train_items / items_per_step))

    def embedder_execution_path(self) -> str | None:
        """The `execution_path` argument of the embedder's forward (None = its default: fast on decoders)."""
        if self.activation_checkpointing:
            return "reference"
        return None if self.execution_path == "auto" else self.execution_path

    def embedder_options(self) -> LoadingOptions:
        """The options LRCL builds its embedder with (the pipeline's raw arm too): these fields, with the 4-bit
        layers computing in bfloat16 under bf16 mixed precision unless `bnb_4bit_compute_dtype` says otherwise."""
        options = self.loading_options()
        if options.bnb_4bit_compute_dtype is None and self.resolved_mixed_precision() == "bf16":
            options = dataclasses.replace(options, bnb_4bit_compute_dtype="bfloat16")
        return options

    def resolved_mixed_precision(self) -> str | None:
        """The value for `Accelerator(mixed_precision=...)`; None lets an `accelerate launch` setting through."""
        if self.bf16 or self.fp16:
            return "bf16" if self.bf16 else "fp16"
        if self.bf16 is False or self.fp16 is False:  # switched off explicitly: full precision
            return "no"
        if self.mixed_precision != "auto":
            return self.mixed_precision
        if os.environ.get("ACCELERATE_MIXED_PRECISION"):
            return None
        import torch

        if torch.cuda.is_available():
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "no"
