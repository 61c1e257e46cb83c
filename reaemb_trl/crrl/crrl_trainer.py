"""EmbeddingGRPOTrainer: TRL's GRPOTrainer with a Gaussian latent-thought policy in place of token generation.

"Generation" samples G thoughts per item around the thought module's mean and embeds them on the prefix KV cache
(the fast path); the reward model ranks each item's candidates against the G embeddings. TRL's sampler, buffering
across `steps_per_generation` / `num_iterations`, optimiser, logging and checkpointing are used as they are; the
buffer holds tensors only, and the loss recomputes the mean from the stored prefix states without a backbone pass.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import datasets
import numpy as np
import torch
from peft import PeftModel
from transformers import TrainerState
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import TrainOutput, get_last_checkpoint
from trl import GRPOTrainer
from trl.trainer.utils import nanstd

from ..embedder import LatentReasoningEmbedder, PrefixCache, pad_prompts
from ..embedder.serialization import load_thought_weights
from ..errors import InputError
from ..hub import write_model_card
from ..training_state import SafeCheckpointMixin, has_state, load_state, save_state
from ..validation import NonFiniteError
from .crrl_config import CRRLConfig
from .policy import (
    clip_fractions,
    gaussian_kl,
    group_advantages,
    noise_free_baseline_advantages,
    policy_logprobs,
    reduce_per_token,
    surrogate_loss,
)
from .reward_model import CooccurrenceRewardModel

PREFIX_KEY = "prefix."


def item_dataset(item_ids, item_texts: list[str]) -> datasets.Dataset:
    """Rows {prompt: item text, item_id} for the items CRRL trains or evaluates on."""
    item_ids = [int(i) for i in item_ids]
    return datasets.Dataset.from_dict({"prompt": [item_texts[i] for i in item_ids], "item_id": item_ids})


def select_trainable(embedder: LatentReasoningEmbedder, train_lora: bool) -> None:
    """Thought module only (LoRA merged into the frozen backbone), or the thought module plus the LoRA adapters."""
    if train_lora and not isinstance(embedder.backbone, PeftModel):
        raise InputError("train_lora=True but the LRCL folder has no LoRA adapter")
    if not train_lora:
        embedder.merge_lora()
    for name, parameter in embedder.named_parameters():
        parameter.requires_grad_(name.startswith("thought_module.") or (train_lora and "lora_" in name))


class EmbeddingGRPOTrainer(SafeCheckpointMixin, GRPOTrainer):
    """GRPO on the thought module of a `LatentReasoningEmbedder`, rewarded by a `CooccurrenceRewardModel`.

    `train_dataset` / `eval_dataset` rows are {prompt: item text, item_id} (see `item_dataset`); evaluation is the
    mean noise-free `args.eval_reward` over the eval items, and over as many training items (a fixed sample), so the
    curves show both what the policy is trained on and what it generalises to. `reward_funcs` defaults to
    `args.rewards` resolved through the reward registry; each is called as `fn(scores, positive_weights, **kwargs)`.
    """

    _tag_names = ["trl", "grpo", "reaemb", "crrl"]
    _name = "CRRL"

    def __init__(
        self,
        model: LatentReasoningEmbedder,
        args: CRRLConfig,
        reward_model: CooccurrenceRewardModel,
        train_dataset: datasets.Dataset,
        eval_dataset: datasets.Dataset | None = None,
        reward_funcs: list | None = None,
        callbacks=None,
        optimizers=(None, None),
    ):
        if (args.per_device_train_batch_size * args.steps_per_generation) % args.num_generations:
            raise InputError(
                f"per_device_train_batch_size x steps_per_generation ({args.per_device_train_batch_size} x "
                f"{args.steps_per_generation}) must be a multiple of num_generations ({args.num_generations}): each "
                "process samples whole groups, which share one prefix pass"
            )
        if args.logprob == "token_likelihood" and not model.config.is_causal:
            raise InputError("logprob=token_likelihood needs a decoder backbone with an LM head")
        names = list(args.rewards) if reward_funcs is None else [getattr(f, "__name__", str(f)) for f in reward_funcs]
        reward_funcs = [args.reward(name) for name in args.rewards] if reward_funcs is None else list(reward_funcs)
        self.reward_model = reward_model
        reward_model.clear_cache()
        select_trainable(model, args.train_lora)
        self.reference_thought_module = (
            copy.deepcopy(model.thought_module).requires_grad_(False) if args.beta != 0.0 else None
        )
        # With beta != 0 and no PEFT, GRPOTrainer loads a reference model from the hub; the Gaussian KL needs only
        # the starting thought module, so TRL is built with beta 0 and the value is restored after.
        beta = args.beta
        args.beta = 0.0
        try:
            super().__init__(
                model=model,
                reward_funcs=reward_funcs,
                args=args,
                train_dataset=train_dataset,
                eval_dataset=eval_dataset,
                processing_class=model.tokenizer,
                callbacks=callbacks,
                optimizers=optimizers,
            )
        finally:
            args.beta = beta
        self.beta = beta
        self.reward_func_names = names
        if self.reference_thought_module is not None:
            self.reference_thought_module.to(self.accelerator.device)
        sample_size = min(len(train_dataset), len(eval_dataset) if eval_dataset is not None else 0)
        self.train_sample_ids = (np.random.default_rng(args.seed).choice(train_dataset["item_id"], sample_size,
                                                                           replace=False) if sample_size else None)
        self._noise = torch.Generator(device=self.accelerator.device)
        self._noise.manual_seed(args.seed + self.accelerator.process_index)
        # Pass 1 depends on the backbone only, which trains only with train_lora.
        self.prefix_cache = (PrefixCache(args.prefix_cache_size)
                             if args.prefix_cache_size and not args.train_lora else None)

    # ------------------------------------------------------------------------------------------------ generation
    def _encode(self, texts: list[str]) -> torch.Tensor:
        embedder = self.accelerator.unwrap_model(self.model)
        return embedder.encode(texts, batch_size=self.args.encode_batch_size, show_progress=False,
                               prefix_cache=self.prefix_cache)

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, torch.Tensor | None]:
        args = self.args
        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        embedder = self.accelerator.unwrap_model(self.model)
        device = self.accelerator.device
        item_ids = torch.tensor([row["item_id"] for row in inputs], dtype=torch.long)
        texts = [row["prompt"] for row in inputs[::group_size]]

        with torch.no_grad():
            prompts = embedder.prompts.build(texts)
            batch = {key: value.to(device) for key, value in
                     pad_prompts(prompts, embedder.tokenizer.pad_token_id, embedder.config.padding_side).items()}
            if self.prefix_cache is not None and args.disable_dropout:  # with dropout, pass 1 is random
                prefix = embedder.encode_prefix_cached(prompts, self.prefix_cache)
            else:
                prefix = embedder.encode_prefix(**batch)
            mean = embedder.thought_mean(prefix)
            thoughts, embeddings = embedder.sample_group(
                prefix, group_size, args.sigma, noise_free_first=args.noise_free_first, generator=self._noise,
                antithetic=args.antithetic,
            )
            noise = (thoughts - mean.repeat_interleave(group_size, 0)) / args.sigma
            old_logps = policy_logprobs(args.logprob, embedder, prefix, mean, thoughts, noise, args.sigma, group_size)
            ref_mean = None
            if self.reference_thought_module is not None:
                ref_mean = self.reference_thought_module(**prefix.thought_inputs()).repeat_interleave(group_size, 0)

        scored = self.reward_model.score(
            item_ids, embeddings, self._encode, step=self.state.global_step, epoch=int(self.state.epoch or 0)
        )
        local_rewards = torch.stack(
            [
                fn(scored.scores, scored.positive_weights, item_ids=item_ids, candidate_ids=scored.candidate_ids,
                   embeddings=embeddings).float()
                for fn in self.reward_funcs
            ],
            dim=1,
        )
        local_rewards[~scored.has_positive] = torch.nan  # no co-occurring item: unscorable, advantage 0
        rewards_per_func = self.accelerator.gather(local_rewards.to(device))
        rewards = (rewards_per_func * self.reward_weights.to(device)).sum(dim=1)

        if args.advantage == "noise_free_baseline":
            advantages = noise_free_baseline_advantages(rewards, group_size)
        else:
            advantages = group_advantages(rewards, group_size, args.scale_rewards)
        process_slice = slice(
            self.accelerator.process_index * len(inputs), (self.accelerator.process_index + 1) * len(inputs)
        )
        self._log_generation(mode, rewards_per_func, rewards, advantages, group_size)

        repeat = lambda t: t.repeat_interleave(group_size, 0)  # noqa: E731  (one row per sample, for shuffling)
        output = {
            "advantages": advantages[process_slice],
            "thoughts": thoughts,
            "noise": noise,
            "old_logps": old_logps,
            "ref_mean": ref_mean,
            **{PREFIX_KEY + key: repeat(value) for key, value in prefix.thought_inputs().items()},
        }
        if args.logprob == "token_likelihood":
            output.update(input_ids=repeat(batch["input_ids"]), attention_mask=repeat(batch["attention_mask"]))
        return output

    def _log_generation(self, mode, rewards_per_func, rewards, advantages, group_size) -> None:
        metrics = self._metrics[mode]
        for column, name in enumerate(self.reward_func_names):
            metrics[f"rewards/{name}/mean"].append(torch.nanmean(rewards_per_func[:, column]).item())
            metrics[f"rewards/{name}/std"].append(nanstd(rewards_per_func[:, column]).item())
        metrics["reward"].append(torch.nanmean(rewards).item())
        metrics["reward_std"].append(nanstd(rewards).item())
        if self.args.noise_free_first:  # the policy's own (mean-thought) reward, without the sampling noise
            metrics["reward_noise_free"].append(torch.nanmean(rewards.view(-1, group_size)[:, 0]).item())
        group_std = torch.nan_to_num(nanstd(rewards.view(-1, group_size), dim=1), nan=0.0)
        metrics["frac_reward_zero_std"].append((group_std == 0).float().mean().item())
        metrics["advantages/mean"].append(advantages.mean().item())
        metrics["advantages/std"].append(advantages.std().item())
        metrics["unscorable_samples"].append(float(torch.isnan(rewards).sum().item()))
        metrics["sigma"].append(self.args.sigma)
        if self.prefix_cache is not None:
            looked_up = self.prefix_cache.hits + self.prefix_cache.misses
            metrics["prefix_cache/hit_rate"].append(self.prefix_cache.hits / max(looked_up, 1))

    # ----------------------------------------------------------------------------------------------------- loss
    def _policy_forward(self, model, inputs: dict[str, torch.Tensor]):
        """Current-policy mean [n, j, d] and per-token log-probs [n, T] of the stored samples (one row each).

        The mean goes through `model` (the DDP wrapper when distributed) so that its gradient is synchronised.
        """
        args = self.args
        embedder = self.accelerator.unwrap_model(model)
        if args.logprob == "gaussian":
            thought_inputs = {key[len(PREFIX_KEY):]: value for key, value in inputs.items()
                              if key.startswith(PREFIX_KEY)}
            mean = model(thought_inputs=thought_inputs).thought_means
            logps = policy_logprobs("gaussian", embedder, None, mean, inputs["thoughts"], inputs["noise"],
                                    args.sigma, group_size=1)
            return mean, logps
        # token_likelihood: the prefix cache, rebuilt from the stored prompts once per distinct prompt (the samples
        # of one item share it); it carries gradient only when LoRA trains.
        width = inputs["input_ids"].shape[1]
        prompts, rows = torch.unique(torch.cat([inputs["input_ids"], inputs["attention_mask"]], 1), dim=0,
                                     return_inverse=True)
        with torch.set_grad_enabled(torch.is_grad_enabled() and args.train_lora):
            prefix = embedder.encode_prefix(prompts[:, :width], prompts[:, width:])
        mean = model(thought_inputs=prefix.thought_inputs()).thought_means[rows]
        logps = policy_logprobs("token_likelihood", embedder, embedder.select_prefix(prefix, rows), mean,
                                inputs["thoughts"], inputs["noise"], args.sigma, group_size=1)
        return mean, logps

    def _compute_loss(self, model, inputs):
        args = self.args
        mode = "train" if self.model.training else "eval"
        mean, logps = self._policy_forward(model, inputs)

        advantages = inputs["advantages"]
        log_ratio = reduce_per_token(logps - inputs["old_logps"], args.logprob_reduction)
        per_token_loss, ratio = surrogate_loss(
            log_ratio, advantages, self.loss_type, self.epsilon_low, self.epsilon_high,
            logprobs=reduce_per_token(logps, args.logprob_reduction), delta=args.delta,
            sapo_temperatures=(args.sapo_temperature_pos, args.sapo_temperature_neg),
        )
        kl = None
        if self.beta != 0.0:
            per_dimension = args.logprob_reduction == "per_dimension" and args.logprob == "gaussian"
            kl_reduction = "per_dimension" if per_dimension else ("sum" if args.logprob_reduction == "sum" else "mean")
            kl = reduce_per_token(gaussian_kl(mean, inputs["ref_mean"], args.sigma), kl_reduction)
            per_token_loss = per_token_loss + self.beta * kl
        # Every sample has the same number of dimensions / suffix tokens, so TRL's aggregations coincide.
        loss = per_token_loss.mean()
        if mode == "train":
            # every process agrees (a raise on one alone would hang the others' next collective)
            finite = (torch.isfinite(loss.detach()) & torch.isfinite(mean.detach()).all()).float().reshape(1)
            if self.accelerator.gather(finite).min().item() < 1.0:
                raise NonFiniteError(f"CRRL: the loss or the policy's thought mean became NaN or inf at step "
                                     f"{self.state.global_step + 1}; lower learning_rate or sigma (this step was "
                                     "not saved)")
            loss = loss / self.current_gradient_accumulation_steps

        gather_mean = lambda t: self.accelerator.gather(t.detach().float().mean().reshape(1)).mean().item()  # noqa: E731
        metrics = self._metrics[mode]
        low, high = clip_fractions(ratio.detach(), advantages, self.epsilon_low, self.epsilon_high)
        metrics["clip_ratio/low_mean"].append(gather_mean(low))
        metrics["clip_ratio/high_mean"].append(gather_mean(high))
        metrics["clip_ratio/region_mean"].append(gather_mean(low + high))
        metrics["log_ratio/mean"].append(gather_mean(log_ratio))
        metrics["log_ratio/abs_max"].append(
            self.accelerator.gather(log_ratio.detach().abs().max().reshape(1)).max().item()
        )
        if kl is not None:
            metrics["kl"].append(gather_mean(kl))
        return loss

    # ------------------------------------------------------------------------------------------- evaluation, I/O
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Refuses to write NaN / inf weights (a checkpoint or the final folder), on every process alike."""
        bad = [name for name, param in self.model.named_parameters()
               if param.requires_grad and not torch.isfinite(param.detach()).all()]
        if bad:
            raise NonFiniteError(f"CRRL: trainable weights hold NaN or inf values at step {self.state.global_step} "
                                 f"({', '.join(bad[:3])}); nothing was saved; lower learning_rate or sigma")
        super().save_model(output_dir, _internal_call)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """Mean noise-free reward of the eval items (no sampling); logged as `{prefix}_{eval_reward}`."""
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            raise InputError("evaluate() needs eval items (eval_dataset)")
        was_training = self.model.training
        self.model.eval()
        try:
            reward_fn = self.args.reward(self.args.eval_reward)
            metrics = {f"{metric_key_prefix}_{self.args.eval_reward}":
                       self.reward_model.evaluate(dataset["item_id"], self._encode, reward_fn)}
            if self.train_sample_ids is not None:
                metrics[f"{metric_key_prefix}_train_items_{self.args.eval_reward}"] = self.reward_model.evaluate(
                    self.train_sample_ids, self._encode, reward_fn)
            self.log(metrics)
        finally:
            self.model.train(was_training)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def _generation_state_name(self) -> str:
        return f"generation_state_{self.args.process_index}"

    def _save_rng_state(self, output_dir: str) -> None:
        super()._save_rng_state(output_dir)
        # What the Trainer's files miss for an exact resume: the thought-noise generator, TRL's micro-step counter
        # and, when the checkpoint falls inside a generation's num_iterations x steps_per_generation cycle, the
        # buffered samples the remaining micro-steps train on.
        state = {"noise": self._noise.get_state(), "step": self._step}
        if self._buffered_inputs is not None and self._step % (self.args.steps_per_generation * self.num_iterations):
            state["buffered_inputs"] = self._buffered_inputs
        save_state(state, output_dir, self._generation_state_name())

    def _load_rng_state(self, checkpoint: str | None) -> None:
        super()._load_rng_state(checkpoint)
        if checkpoint is None or not has_state(checkpoint, self._generation_state_name()):
            return
        state = load_state(checkpoint, self._generation_state_name())
        self._noise.set_state(state["noise"])
        self._step = state["step"]
        device = self.accelerator.device
        self._buffered_inputs = [{key: value.to(device) if isinstance(value, torch.Tensor) else value
                                  for key, value in batch.items()}
                                 for batch in state.get("buffered_inputs", [])] or None

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """The Trainer's `train`, except that resuming from the checkpoint of a finished run trains no more steps
        (the Trainer would run one step past `max_steps`: it checks the limit only after a step)."""
        checkpoint = get_last_checkpoint(self.args.output_dir) if resume_from_checkpoint is True else (
            resume_from_checkpoint or None)
        if checkpoint is not None and os.path.isfile(os.path.join(checkpoint, TRAINER_STATE_NAME)):
            state = TrainerState.load_from_json(os.path.join(checkpoint, TRAINER_STATE_NAME))
            limit = self.args.max_steps if self.args.max_steps > 0 else state.max_steps
            if state.global_step >= limit:
                self._load_from_checkpoint(checkpoint)
                self.state = state
                return TrainOutput(state.global_step, float("nan"), {})  # no step ran: no training loss
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        # Checkpoints are embedder folders (thought module + adapter), not a full state dict.
        embedder = self.accelerator.unwrap_model(model if model is not None else self.model)
        load_thought_weights(embedder, resume_from_checkpoint, with_adapter=self.args.train_lora)


    def create_model_card(self, model_name: str | None = None, dataset_name: str | None = None,
                          tags: str | list[str] | None = None, start_metrics: dict[str, float] | None = None) -> None:
        """This model's card (not TRL's text-generation one): TRL writes it with every checkpoint and push;
        `start_metrics`: the held-out metrics before training, beside the last ones."""
        if not self.is_world_process_zero():
            return
        evaluations = [entry for entry in self.state.log_history if any(k.startswith("eval_") for k in entry)]
        metrics = {key: value for entry in evaluations[-1:] for key, value in entry.items()
                   if key.startswith("eval_") and isinstance(value, float)}
        embedder = self.accelerator.unwrap_model(self.model)
        write_model_card(self.args.output_dir, stage="crrl", backbone=embedder.config.backbone_name_or_path,
                         settings=self.args.card_settings(), dataset_sha256=self.reward_model.dataset_sha256,
                         metrics=metrics, start_metrics=start_metrics, repo_id=self.args.hub_model_id)
