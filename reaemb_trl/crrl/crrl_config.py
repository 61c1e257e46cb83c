"""Settings of the CRRL stage: TRL's GRPOConfig plus the latent-policy and reward settings (reference defaults)."""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from typing import Any

from trl import GRPOConfig

from ..data.association import POSITIVE_RULES
from ..embedder.configuration import SIMILARITIES
from ..embedder.loading import LoadingOptions, option_field
from ..errors import InputError
from ..launch import gpu_less_multiprocess
from ..recipe import help_field, renamed_message
from ..rewards import bind_reward
from ..validation import check_numbers
from .policy import LOGPROB_REDUCTIONS, LOSS_TYPES

logger = logging.getLogger(__name__)
LOGPROB_CHOICES = ("gaussian", "token_likelihood")
ADVANTAGE_CHOICES = ("group", "noise_free_baseline")
# GRPOConfig keys that mean nothing for a latent-thought policy (no text is generated, no vLLM, no completions to
# log): a recipe that sets one to anything but TRL's default is refused instead of silently ignored.
UNUSED_GRPO_KEYS = {
    "text sampling": ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "max_completion_length",
                      "generation_kwargs", "chat_template_kwargs", "cache_implementation", "use_transformers_paged",
                      "mask_truncated_completions", "max_tool_calling_iterations"),
    "vLLM": ("use_vllm", "vllm_mode", "vllm_model_impl", "vllm_enable_sleep_mode", "vllm_structured_outputs_regex",
             "vllm_server_base_url", "vllm_server_host", "vllm_server_port", "vllm_server_timeout",
             "vllm_group_port", "vllm_gpu_memory_utilization", "vllm_max_model_length", "vllm_tensor_parallel_size",
             "vllm_importance_sampling_correction", "vllm_importance_sampling_mode",
             "vllm_importance_sampling_clip_max", "vllm_importance_sampling_clip_min",
             "vllm_importance_sampling_cap"),
    "completion logging": ("log_completions", "num_completions_to_print", "log_unique_prompts",
                           "log_completions_hub_repo", "log_multimodal"),
    "reference-model sync": ("sync_ref_model", "ref_model_mixup_alpha", "ref_model_sync_steps"),
}

# The range of every numeric option of CRRL's own (validation.check_numbers also checks that each is a finite int /
# float), and of the GRPOConfig / TrainingArguments ones that matter here; INHERITED_NUMBERS are checked too.
NUMBER_RULES = {  # save_steps / eval_steps 0: the Trainer never saves / evaluates by steps
    "max_length": ">= 1", "sigma": "> 0", "num_positives": ">= 1", "positive_min_count": ">= 1",
    "num_candidates": ">= 2", "num_hard_negatives": ">= 0", "refresh_every": ">= 1", "eval_items": ">= 0",
    "encode_batch_size": ">= 1", "prefix_cache_size": ">= 0", "per_device_train_batch_size": ">= 1",
    "num_iterations": ">= 1", "epsilon_high": ">= 0", "learning_rate": ">= 0", "warmup_steps": ">= 0",
    # inherited
    "num_train_epochs": "> 0", "max_steps": ">= -1", "weight_decay": ">= 0", "adam_beta1": "[0, 1)",
    "adam_beta2": "[0, 1)", "adam_epsilon": "> 0", "gradient_accumulation_steps": ">= 1", "max_grad_norm": ">= 0",
    "logging_steps": "> 0", "save_steps": ">= 0", "eval_steps": ">= 0", "per_device_eval_batch_size": ">= 1",
    "seed": ">= 0", "generation_batch_size": ">= 1", "steps_per_generation": ">= 1", "beta": ">= 0",
    "epsilon": ">= 0", "delta": "> 0", "top_entropy_quantile": "[0, 1]", "sapo_temperature_pos": "> 0",
    "sapo_temperature_neg": "> 0",
}
INHERITED_NUMBERS = ("num_generations", "reward_weights", "save_total_limit", "data_seed")
# What a model card shows: CRRL's own keys but those that say where the inputs are or how fast the run went, and
# the GRPOConfig / TrainingArguments keys that shape the update (not the other 200).
CARD_LEAVES_OUT = ("lrcl_model_path", "backbone", "model_revision", "dataset_dir", "overwrite_output_dir",
                   "encode_batch_size", "prefix_cache_size")
CARD_TRL_KEYS = ("max_steps", "num_train_epochs", "per_device_train_batch_size", "gradient_accumulation_steps",
                 "num_generations", "num_iterations", "learning_rate", "lr_scheduler_type", "warmup_steps",
                 "weight_decay", "max_grad_norm", "epsilon", "epsilon_high", "beta", "loss_type", "scale_rewards",
                 "reward_weights", "bf16", "seed")


@dataclass
class CRRLConfig(GRPOConfig):
    """One CRRL run. TRL's knobs keep their meaning: `per_device_train_batch_size` counts samples (items x
    `num_generations`), `num_iterations` reuses each generation batch, `epsilon` / `epsilon_high` clip the ratio."""

    # Keys renamed so that each name says one thing: an old key is refused with the new name (recipe.parse_recipe)
    RENAMED_KEYS = {"model_name_or_path": "lrcl_model_path", "gradient_checkpointing": "activation_checkpointing"}

    # Inputs
    lrcl_model_path: str | None = help_field("LRCL output folder (an embedder folder) or its Hub id, to start from.",
                                             default=None)
    backbone: str | None = help_field("Backbone the LRCL folder must be built on (its name or path, as LRCL "
                                      "recorded it); None accepts any.", default=None)
    # LoadingOptions' two that apply to a saved folder (the others are read from its config.json)
    model_revision: str | None = option_field("model_revision", "Hub revision of lrcl_model_path when it is a Hub id.")
    dtype: str | None = option_field("dtype", "dtype the backbone is loaded in (float32, bfloat16, float16, auto; "
                                     "default float32).")
    dataset_dir: str | None = help_field("Prepared dataset folder with cooccurrence.npz.", default=None)
    max_length: int | None = help_field("Longest tokenised prompt; None keeps the embedder's setting.", default=None)

    # Policy
    sigma: float = help_field("Standard deviation of the Gaussian thought policy.", default=0.1)
    noise_free_first: bool = help_field("The first sample of each group is the noise-free thought (reference).",
                                        default=True)
    antithetic: bool = help_field("Mirrored noise: each group's noisy samples come in pairs eps, -eps, so that a "
                                  "pair's update is a central difference of the reward, free of its even-order "
                                  "terms (mirrored sampling; README, CRRL). An odd one out is an independent draw.",
                                  default=False)
    logprob: str = help_field(f"Policy log-prob: {LOGPROB_CHOICES}. `gaussian` is the exact density of the sampled "
                              "thought; `token_likelihood` (the reference's) is not the policy's score function and "
                              "can move against the reward (README, CRRL).", default="gaussian")
    logprob_reduction: str = help_field(f"How per-dimension (per-token) log-ratios become the importance ratio: "
                                        f"{LOGPROB_REDUCTIONS}.", default="mean")
    advantage: str = help_field(f"Advantage estimator: {ADVANTAGE_CHOICES}; `group` honours scale_rewards.",
                                default="group")
    train_lora: bool = help_field("Also train the embedder's LoRA adapters (needs logprob=token_likelihood); default: "
                                  "merge them and train the thought module only.", default=False)

    # Rewards
    rewards: list[str] = help_field("Reward names (registry, entry point or module:function); weights in "
                                    "reward_weights.",
                                    default_factory=lambda: ["cooc_ndcg"])
    num_positives: int = help_field("Positive candidates per item (best-associated first), weighted by their "
                                    "positive_rule score.", default=1)
    positive_rule: str = help_field(f"How positives are picked from the co-occurrence counts: {POSITIVE_RULES}. "
                                    "`count` is the paper's (ties and hub items dominate on sparse data); `cosine` "
                                    "and `pmi` discount popular items (README: choosing the reward's positives).",
                                    default="count")
    positive_min_count: int | None = help_field("Pairs co-occurring fewer times are never positives; None: the "
                                                "rule's default (2 for pmi, else 1).", default=None)
    num_candidates: int = help_field("Candidates per item, positives included.", default=10)
    num_hard_negatives: int = help_field("How many of each item's negatives are hard: the never-co-occurring items "
                                         "that the current model places closest to it (every item is embedded at "
                                         "each candidate refresh); the rest are random (the paper: 0).", default=0)
    similarity: str = help_field(f"Similarity of embeddings to candidates: {SIMILARITIES}.", default="cosine")
    refresh_every: int = help_field("Recompute a cached candidate embedding once it is this many steps old "
                                    "(1 = exact).",
                                    default=1)
    eval_items: int = help_field("Items held out of training; their mean noise-free eval_reward is the evaluation.",
                                 default=256)
    eval_reward: str = help_field("Reward reported on the held-out items.", default="cooc_ndcg")
    reward_kwargs: dict[str, Any] | str | None = help_field(
        "Each reward's own parameters, by reward name, e.g. {cooc_softmax: {temperature: 0.05}} (JSON on the command "
        "line); they apply wherever that reward is used, training or evaluation.", default=None)
    encode_batch_size: int = help_field("Texts per forward pass when embedding candidates and held-out items.",
                                        default=64)
    prefix_cache_size: int = help_field("Prompts whose pass-1 results (prefix states, KV cache) are kept and reused, "
                                        "so a candidate or item seen before costs only the thought module and pass 2; "
                                        "exact because the backbone is frozen. Memory per prompt of T tokens: T final "
                                        "states, plus 2 x layers x kv_heads x head_dim x T cache values on a decoder. "
                                        "0 = off; always off with train_lora.", default=8192)
    overwrite_output_dir: bool = help_field("Replace an output folder that already holds a run.", default=False)

    # Reference defaults for GRPOConfig fields
    per_device_train_batch_size: int = help_field(
             "Completions per process per step, as GRPO counts them: items x num_generations (the default 256 = 32 "
             "items x 8 generations; LRCL's counts items).", default=256)
    num_iterations: int = help_field("Optimisation passes over each generation batch.", default=2)
    epsilon_high: float | None = help_field("Upper clip: the ratio is clipped to [1 - epsilon, 1 + epsilon_high].",
                                            default=0.28)
    loss_type: str = help_field(f"Aggregation of the clipped objective: {LOSS_TYPES}.", default="grpo")
    learning_rate: float = help_field("Peak learning rate of AdamW.", default=1e-4)
    lr_scheduler_type: str = help_field("A transformers scheduler name.", default="cosine")
    warmup_steps: float = help_field("Learning-rate warm-up, as TrainingArguments reads it: a whole number >= 1 is "
                                     "optimizer steps, a number below 1 a share of the run's steps. The default 0.1 "
                                     "scales with the run (the reference's fixed 200 steps kept a 25-step run below "
                                     "1/8 of the peak learning rate).", default=0.1)
    bf16: bool | None = help_field("bfloat16 mixed precision (off by default: the thought module trains in float32).",
                                   default=False)
    activation_checkpointing: bool | None = help_field("Recompute activations in backward; the backbone is frozen "
                                                       "in CRRL, so off by default.", default=False)
    gradient_checkpointing: bool | None = help_field("Renamed: activation_checkpointing.", default=None)
    report_to: None | str | list[str] = help_field(
             "Trackers (tensorboard, wandb, ...; none for none). Default tensorboard in both stages: a dependency of "
             "this package, it shows the curves while a run trains (the curves PNG comes only at the end).",
             default="tensorboard")
    resume_from_checkpoint: str | None = help_field("A checkpoint-N folder, or `latest` / `true` for the newest one "
                                                    "under output_dir.", default=None)
    disable_dropout: bool = help_field("Switch the model's dropout off: with it, the backbone's dropout noise would "
                                       "swamp the thought samples' effect on the reward and make the ratio noisy.",
                                       default=True)

    def loading_options(self) -> LoadingOptions:
        """How the LRCL folder's backbone is loaded (its other options are saved in the folder)."""
        return LoadingOptions(model_revision=self.model_revision, dtype=self.dtype)

    def card_settings(self) -> dict:
        """The settings the model card shows (CARD_LEAVES_OUT, CARD_TRL_KEYS), as `to_dict` writes them."""
        trl_keys = {f.name for f in dataclasses.fields(GRPOConfig)}
        own = [f.name for f in dataclasses.fields(self) if f.name not in trl_keys and f.name not in CARD_LEAVES_OUT]
        settings = self.to_dict()
        return {name: settings[name] for name in [*own, *CARD_TRL_KEYS]}

    def _check_reward_kwargs(self) -> None:
        if isinstance(self.reward_kwargs, str):
            try:
                self.reward_kwargs = json.loads(self.reward_kwargs)
            except json.JSONDecodeError as err:
                raise InputError(f"CRRL config: reward_kwargs is not valid JSON ({err.msg})") from None
        self.reward_kwargs = dict(self.reward_kwargs or {})
        used = {*self.rewards, self.eval_reward}
        for name, kwargs in self.reward_kwargs.items():
            if name not in used:
                raise InputError(f"CRRL config: reward_kwargs names {name!r}, which is neither in rewards "
                                 f"{self.rewards} nor the eval_reward {self.eval_reward!r}")
            if not isinstance(kwargs, dict):
                raise InputError(f"CRRL config: reward_kwargs[{name!r}] must be a mapping of parameter: value")
            self.reward(name)  # a parameter the reward does not have is refused now, before any data is read
        for name in used:
            bind_reward(name)  # an unknown reward name is refused before the model or the data is loaded

    def reward(self, name: str):
        """Reward `name` with its `reward_kwargs` applied: every place that scores with a reward gets it here."""
        return bind_reward(name, self.reward_kwargs.get(name))

    def _refuse_unused_grpo_keys(self) -> None:
        defaults = {f.name: f.default for f in dataclasses.fields(GRPOConfig)}
        for meaning, names in UNUSED_GRPO_KEYS.items():
            set_here = [name for name in names if name in defaults and getattr(self, name) != defaults[name]]
            if set_here:
                raise InputError(f"CRRL config: {', '.join(set_here)} ({meaning}) mean nothing here: CRRL samples "
                                 "latent thoughts, not text (the KL reference is the starting policy); drop them")

    def __post_init__(self):
        if self.gradient_checkpointing is not None:  # TrainingArguments' deprecated alias: one name here
            raise InputError(f"CRRL config: {renamed_message(['gradient_checkpointing'], self.RENAMED_KEYS)}")
        own = [name for name in vars(CRRLConfig).get("__annotations__", {})]
        check_numbers(self, "CRRL config", NUMBER_RULES, fields=[*own, *INHERITED_NUMBERS])
        if self.max_steps == 0:  # TrainingArguments would silently train num_train_epochs instead
            raise InputError("CRRL config: max_steps must be >= 1 (or -1: train num_train_epochs), got 0")
        # GRPOConfig raises ValueError for these; the CLI's contract is an InputError naming the setting.
        if self.num_generations is None or self.num_generations < 2:
            raise InputError(f"CRRL config: num_generations must be >= 2 (a group needs a baseline), "
                             f"got {self.num_generations}")
        choices = {"logprob": LOGPROB_CHOICES, "logprob_reduction": LOGPROB_REDUCTIONS, "positive_rule": POSITIVE_RULES,
                   "advantage": ADVANTAGE_CHOICES, "similarity": SIMILARITIES, "loss_type": LOSS_TYPES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise InputError(f"CRRL config: {name}={getattr(self, name)!r} is not one of {allowed}")
        if isinstance(self.rewards, str):
            self.rewards = [name.strip() for name in self.rewards.split(",") if name.strip()]
        if not self.rewards:
            raise InputError("CRRL config: rewards is empty")
        self._check_reward_kwargs()
        if self.reward_weights is not None and len(self.reward_weights) != len(self.rewards):
            raise InputError(f"CRRL config: {len(self.reward_weights)} reward_weights for {len(self.rewards)} rewards")
        if self.advantage == "noise_free_baseline" and not self.noise_free_first:
            raise InputError("CRRL config: advantage=noise_free_baseline needs noise_free_first=True")
        if self.logprob == "token_likelihood":
            logger.warning("CRRL config: logprob=token_likelihood (the reference's surrogate) scores the tokens after "
                           "the thought, not the sampled thought: its update is not the policy gradient and descended "
                           "the expected reward in tests/test_crrl_learns.py; prefer logprob=gaussian")
        if self.train_lora and self.logprob == "gaussian":
            raise InputError("CRRL config: train_lora needs logprob=token_likelihood (the Gaussian log-prob does not "
                             "depend on the LoRA weights)")
        self._refuse_unused_grpo_keys()
        if self.num_candidates <= self.num_positives:
            raise InputError(f"CRRL config: num_candidates ({self.num_candidates}) must exceed num_positives "
                             f"({self.num_positives})")
        if not 0 <= self.num_hard_negatives <= self.num_candidates - self.num_positives:
            raise InputError(f"CRRL config: num_hard_negatives must be in 0..{self.num_candidates - self.num_positives}"
                             f" (num_candidates - num_positives), got {self.num_hard_negatives}")
        if not self.use_cpu and gpu_less_multiprocess("CRRL"):
            self.use_cpu = True
        try:
            super().__post_init__()
        except ValueError as err:
            raise InputError(f"CRRL config: {err}") from err
