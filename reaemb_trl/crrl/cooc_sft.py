"""The supervised control of CRRL (the `lrcl_cooc_sft` arm): CRRL's positives and negatives as a contrastive loss.

Everything but the learning signal is CRRL's: the recipe's `crrl` section (a `CRRLConfig`), its reward model
(`build_reward_model`) and train / held-out split, the trainable parameters (the thought module, LoRA merged:
`select_trainable`), the optimiser and schedule the Trainer builds from the recipe, and as many item visits: a CRRL
optimizer step covers per_device_train_batch_size x gradient_accumulation_steps / num_generations items and
reuses each batch for num_iterations steps, and so does this loop. Where CRRL samples G noisy thoughts per item and
follows the reward's sampled gradient, this loop embeds each item with its noise-free thought, with gradient through
pass 2 into the thought module, and minimises the cross-entropy between the positive weights and
softmax(similarity to the candidates / temperature), i.e. minus the `cooc_softmax` reward at its own temperature.
The candidate embeddings come from the reward model's cache: exactly what the reward compares against.

Dropout stays off (CRRL's default `disable_dropout`); there are no checkpoints: the output folder appears whole at
the end, so a killed run leaves nothing and starts over.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import Trainer, get_scheduler

from ..embedder import LatentReasoningEmbedder, PrefixCache
from ..errors import InputError
from ..hub import write_model_card
from ..io_utils import OutputGuard, atomic_output_dir, write_json
from ..rewards.builtin import cooc_softmax
from .crrl_config import CRRLConfig
from .crrl_trainer import select_trainable
from .reward_model import CooccurrenceRewardModel
from .run import build_reward_model, load_policy


def cross_entropy(scores: torch.Tensor, positive_weights: torch.Tensor, **kwargs) -> torch.Tensor:
    """[N] cross-entropy of softmax(scores / temperature) against the positive weights: minus `cooc_softmax`
    (at its temperature), in the reward-function signature so that `reward_model.evaluate` can average it."""
    return -cooc_softmax(scores, positive_weights)


def items_per_step(args: CRRLConfig) -> int:
    """Items one CRRL optimizer step trains on (per process): its samples / num_generations."""
    return args.per_device_train_batch_size * args.gradient_accumulation_steps // args.num_generations


class CoocSFT:
    """Supervised training of the thought module of `embedder` on `reward_model`'s candidates of `train_items`."""

    def __init__(self, embedder: LatentReasoningEmbedder, args: CRRLConfig, reward_model: CooccurrenceRewardModel,
                 train_items):
        if args.train_lora:
            raise InputError("cooc SFT trains the thought module only, like CRRL's default: set train_lora=False")
        if args.max_steps <= 0:
            raise InputError(f"cooc SFT runs CRRL's max_steps, which must be > 0 (got {args.max_steps})")
        self.batch_size = items_per_step(args)
        if not 1 <= self.batch_size <= len(train_items):
            raise InputError(f"cooc SFT: {self.batch_size} items per step (per_device_train_batch_size x "
                             f"gradient_accumulation_steps / num_generations) for {len(train_items)} train items")
        self.args = args
        self.reward_model = reward_model
        reward_model.clear_cache()
        self.train_items = np.asarray(train_items, dtype=np.int64)
        select_trainable(embedder, train_lora=False)
        self.embedder = embedder.to(args.device).eval()  # eval: dropout off
        # pass 1 depends on the frozen backbone only: a prompt's is computed once (items and candidates alike)
        self.prefix_cache = PrefixCache(args.prefix_cache_size) if args.prefix_cache_size else None
        self.parameters = [p for p in embedder.parameters() if p.requires_grad]
        optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(args, embedder)
        self.optimizer = optimizer_cls([{"params": self.parameters, "weight_decay": args.weight_decay}],
                                       **optimizer_kwargs)
        self.scheduler = get_scheduler(args.lr_scheduler_type, self.optimizer,
                                       num_warmup_steps=args.get_warmup_steps(args.max_steps),
                                       num_training_steps=args.max_steps,
                                       scheduler_specific_kwargs=args.lr_scheduler_kwargs)
        self.log_history: list[dict] = []
        self.items_seen = 0

    def encode(self, texts: list[str]) -> torch.Tensor:
        """Noise-free embeddings without gradient (candidates, evaluation), as CRRL's trainer computes them."""
        return self.embedder.encode(texts, batch_size=self.args.encode_batch_size, show_progress=False,
                                    prefix_cache=self.prefix_cache)

    def loss(self, item_ids: np.ndarray, step: int, epoch: int) -> torch.Tensor:
        """Mean cross-entropy of the items' noise-free embeddings (with gradient) against their candidates."""
        embedder = self.embedder
        texts = [self.reward_model.item_texts[i] for i in item_ids.tolist()]
        if self.prefix_cache is not None:
            prefix = embedder.encode_prefix_cached(embedder.prompts.build(texts), self.prefix_cache)
            embeddings = embedder.embed_with_thoughts(prefix, embedder.thought_mean(prefix))
        else:
            batch = {key: value.to(self.args.device) for key, value in embedder.tokenize(texts).items()}
            embeddings = embedder(**batch).embeddings
        scored = self.reward_model.score(torch.from_numpy(item_ids), embeddings, self.encode, step=step, epoch=epoch)
        keep = scored.has_positive  # every train item has one (split_items), kept for items passed by hand
        return cross_entropy(scored.scores[keep], scored.positive_weights[keep]).mean()

    def evaluate(self, item_sets: dict[str, np.ndarray]) -> dict[str, float]:
        """Noise-free mean eval_reward and loss (`cross_entropy`) of each named set of items, candidates freshly
        embedded (`reward_model.evaluate`): {NAME + eval_reward: value, NAME + "loss": value}."""
        embedded: dict[str, torch.Tensor] = {}

        def encode_once(texts: list[str]) -> torch.Tensor:  # the sets share most candidates: embed each text once
            new = [text for text in dict.fromkeys(texts) if text not in embedded]
            if new:
                embedded.update(zip(new, self.encode(new)))
            return torch.stack([embedded[text] for text in texts])

        scores = {self.args.eval_reward: self.args.reward(self.args.eval_reward), "loss": cross_entropy}
        return {name + key: self.reward_model.evaluate(items, encode_once, score_fn)
                for name, items in item_sets.items() for key, score_fn in scores.items()}

    def batches(self):
        """(epoch, items) per CRRL generation: a fresh random order each epoch, the incomplete last batch dropped
        (as TRL's sampler drops it)."""
        generator = torch.Generator().manual_seed(self.args.seed)
        epoch = 0
        while True:
            order = self.train_items[torch.randperm(len(self.train_items), generator=generator).numpy()]
            for start in range(0, len(order) - self.batch_size + 1, self.batch_size):
                yield epoch, order[start : start + self.batch_size]
            epoch += 1

    def train(self) -> list[dict]:
        """max_steps optimizer steps; returns the log history (step, loss, learning rate, epoch)."""
        args = self.args
        batches = self.batches()
        progress = tqdm(range(args.max_steps), desc="cooc SFT", disable=args.disable_tqdm)
        for step in progress:
            if step % args.num_iterations == 0:  # CRRL reuses a generation's items for num_iterations steps
                epoch, items = next(batches)
            loss = self.loss(items, step, epoch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if args.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(self.parameters, args.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.items_seen += len(items)
            self.log_history.append({"step": step + 1, "loss": loss.item(), "learning_rate":
                                     self.scheduler.get_last_lr()[0], "epoch": epoch})
            progress.set_postfix(loss=f"{loss.item():.4f}")
        return self.log_history


def run_cooc_sft(args: CRRLConfig) -> dict:
    """The SFT control from the LRCL folder `args.lrcl_model_path`; returns its metrics: eval_reward and loss of
    the held-out items and of a training sample before (`start`) and after (`end`), the log history and the item
    visits. Writes the embedder folder `args.output_dir` (+ cooc_sft_config.json, cooc_sft_metrics.json, README.md)
    at the end, whole."""
    model = args.lrcl_model_path
    guard = OutputGuard(args.output_dir, marker="cooc_sft_config.json", flag="--overwrite_output_dir true",
                        inputs=[args.dataset_dir, model if model and Path(model).exists() else None],
                        overwrite=args.overwrite_output_dir)  # before any work; held while the folder is written
    reward_model = build_reward_model(args)
    train_items, heldout_items = reward_model.split_items(args.eval_items, seed=args.seed)
    sft = CoocSFT(load_policy(args), args, reward_model, train_items)
    metrics = {"train_items": len(train_items), "heldout_items": len(heldout_items),
               "skipped_items": reward_model.num_items - len(reward_model.items_with_positives()),
               "items_per_step": sft.batch_size}
    item_sets = {}
    if len(heldout_items):  # and a sample of as many training items, drawn as CRRL's trainer draws its own
        sample = np.random.default_rng(args.seed).choice(train_items, min(len(train_items), len(heldout_items)),
                                                         replace=False)
        item_sets = {"": heldout_items, "train_items_": sample}
    metrics["start"] = {f"eval_start_{key}": value for key, value in sft.evaluate(item_sets).items()}
    metrics["log_history"] = sft.train()
    metrics["item_visits"] = sft.items_seen
    metrics["end"] = {f"eval_{key}": value for key, value in sft.evaluate(item_sets).items()}
    with guard, atomic_output_dir(guard.path, overwrite=guard.replaces) as folder:
        sft.embedder.save_pretrained(folder)
        write_json(folder / "cooc_sft_config.json", args.to_dict())
        write_json(folder / "cooc_sft_metrics.json", metrics)
        write_model_card(folder, stage="cooc_sft", backbone=sft.embedder.config.backbone_name_or_path,
                         settings=args.card_settings(), dataset_sha256=reward_model.dataset_sha256,
                         metrics=metrics["end"], repo_id=args.hub_model_id,
                         start_metrics={key.replace("eval_start_", "eval_"): value
                                        for key, value in metrics["start"].items()})
    return metrics
