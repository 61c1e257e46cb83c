"""Stage 1 of ReaEmb: contrastive training of the embedder on two views of each item, as an Accelerate loop.

The same code runs on one CPU, one GPU and under `accelerate launch` / `torchrun`. Every step's items and views
are a function of (seed, position in the item stream), so resuming only needs the step number, the trainable
weights, the optimizer, the schedule and the torch RNG (LoRA dropout): N straight steps and N/2 + resume + N/2
give the same parameters.

Each job lives in its own module, mixed into `LRCLTrainer`: the items and their views (`item_stream`), evaluation
(`evaluation`), checkpoints and resume (`checkpoints`), the output folder (`output`); the model and optimizer are
built in `build` and `contrastive`. This module wires them to Accelerate and runs the training loop.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data import PreparedDataset
from ..errors import InputError
from ..io_utils import OutputGuard
from ..launch import StopRequests, gpu_less_multiprocess
from ..recipe import config_to_dict
from ..validation import NonFiniteError
from .build import build_embedder, build_optimizer
from .checkpoints import RUN_MARKERS, CheckpointMixin, model_fingerprint
from .contrastive import ContrastiveEmbedder
from .evaluation import EvaluationMixin
from .item_stream import ItemStreamMixin
from .losses import build_loss
from .lrcl_config import LRCLConfig
from .output import OutputMixin


class LRCLTrainer(ItemStreamMixin, EvaluationMixin, CheckpointMixin, OutputMixin):
    """Trains a `LatentReasoningEmbedder` with a contrastive loss on attribute-dropout views of the items.

    `embedder` and `dataset` may be given directly (tests, notebooks); otherwise they are built from the config.
    """

    def __init__(self, config: LRCLConfig, embedder=None, dataset: PreparedDataset | None = None):
        from accelerate import Accelerator
        from accelerate.utils import ProjectConfiguration, set_seed
        from transformers import get_scheduler

        self.config = config
        if embedder is None and not config.model_name_or_path:
            raise InputError("LRCL config: model_name_or_path is required")
        if dataset is None and not config.dataset_dir:
            raise InputError("LRCL config: dataset_dir is required")
        self.output_dir = Path(config.output_dir)
        model = config.model_name_or_path
        self.guard = OutputGuard(  # before any work; held while training (`train`)
            self.output_dir, kind="run", marker=RUN_MARKERS, flag="--overwrite_output_dir true",
            inputs=[config.dataset_dir if dataset is None else getattr(dataset, "path", None),
                    model if model and Path(model).exists() else None],  # a local folder, not a hub name
            overwrite=config.overwrite_output_dir, resume=bool(config.resume_from_checkpoint))
        self.dataset = dataset if dataset is not None else PreparedDataset.load(config.dataset_dir)
        self._split_items()

        trackers = config.report_to or None
        self.accelerator = Accelerator(
            cpu=gpu_less_multiprocess("LRCL"),
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            mixed_precision=config.resolved_mixed_precision(),
            log_with=trackers,
            project_config=ProjectConfiguration(project_dir=str(self.output_dir),
                                                logging_dir=config.logging_dir or str(self.output_dir / "logs")),
            step_scheduler_with_optimizer=False,  # one schedule step per optimizer step, whatever the world size
        )

        self.max_steps = config.total_steps(len(self.train_item_ids), self.accelerator.num_processes)
        set_seed(config.seed)  # the same initial LoRA / thought weights on every process
        embedder = embedder if embedder is not None else build_embedder(config)
        loss = build_loss(config.loss, config.temperature, config.learnable_temperature, config.min_temperature)
        model = ContrastiveEmbedder(embedder, loss, use_thought=not config.no_thought,
                                    gather_negatives=config.gather_negatives,
                                    execution_path=config.embedder_execution_path())
        self.trainable = {name: list(p.shape) for name, p in model.named_parameters() if p.requires_grad}
        if not self.trainable:
            raise InputError("LRCL: the model has no trainable parameters (check lora_target_modules)")
        self.fingerprint = model_fingerprint(
            {"embedder": embedder.config.to_dict(), "backbone": embedder.backbone_model.config.to_dict()},
            self.trainable)
        optimizer = build_optimizer([p for p in model.parameters() if p.requires_grad], config)
        scheduler = get_scheduler(config.lr_scheduler_type, optimizer,
                                  num_warmup_steps=config.get_warmup_steps(self.max_steps),
                                  num_training_steps=self.max_steps)
        self._fill_deepspeed_micro_batch()
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(model, optimizer, scheduler)
        self.accelerator.register_save_state_pre_hook(self._keep_trainable_weights)
        self.accelerator.register_load_state_pre_hook(self._load_trainable_weights)
        self.history: dict[str, list[dict]] = {"train": [], "eval": []}
        self.global_step = 0
        self.train_seconds = 0.0  # time in training steps only (no evaluation, no checkpoints)

    def _fill_deepspeed_micro_batch(self) -> None:
        # accelerate reads DeepSpeed's `auto` micro-batch off a prepared dataloader, and LRCL prepares none.
        plugin = self.accelerator.state.deepspeed_plugin
        if plugin is not None and plugin.is_auto("train_micro_batch_size_per_gpu"):
            plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = self.config.per_device_train_batch_size

    def _tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        batch = self.accelerator.unwrap_model(self.model).embedder.tokenize(texts)
        return {key: value.to(self.accelerator.device) for key, value in batch.items()}

    # -------------------------------------------------------------- training
    def train(self) -> dict:
        """Run to `max_steps` (from a checkpoint if asked), then write the output folder. Returns the last metrics.
        The output's guard is held meanwhile: a replaced run (overwrite_output_dir) is deleted now, once everything
        was checked and built."""
        with self.guard:
            self.accelerator.wait_for_everyone()  # the main process made the folder
            return self._train()

    def _train(self) -> dict:
        config, accelerator = self.config, self.accelerator
        if config.report_to:
            hyperparameters = {k: v if isinstance(v, (int, float, str, bool)) else str(v)
                               for k, v in config_to_dict(config).items()}
            accelerator.init_trackers(config.run_name or "lrcl", config=hyperparameters)
        if config.resume_from_checkpoint:
            self.resume(config.resume_from_checkpoint)
        if self.global_step == 0:
            self._record_eval()

        progress = tqdm(total=self.max_steps, initial=self.global_step, desc="LRCL",
                        disable=not accelerator.is_local_main_process)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        items_per_step = (config.per_device_train_batch_size * accelerator.num_processes
                          * config.gradient_accumulation_steps)
        window_losses, window_start = [], time.perf_counter()
        self.model.train()
        with StopRequests() as stop:  # SIGTERM / SIGINT: checkpoint after the running step, then stop
            while self.global_step < self.max_steps:
                step_start = time.perf_counter()
                step_loss = torch.zeros((), device=accelerator.device)
                for micro in range(config.gradient_accumulation_steps):
                    micro_step = self.global_step * config.gradient_accumulation_steps + micro
                    positions = self.micro_batch_positions(micro_step)
                    texts_a, texts_b = self.view_texts(positions)
                    batch = self._tokenize(texts_a + texts_b)
                    with accelerator.accumulate(self.model):
                        loss = self.model(**batch)
                        accelerator.backward(loss)
                        if accelerator.sync_gradients and config.max_grad_norm > 0:
                            accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
                        self.optimizer.step()
                        if accelerator.sync_gradients:
                            self.scheduler.step()
                        self.optimizer.zero_grad()
                    step_loss += loss.detach() / config.gradient_accumulation_steps
                self.global_step += 1
                step_loss = float(accelerator.reduce(step_loss, reduction="mean"))
                step_seconds = time.perf_counter() - step_start
                self.train_seconds += step_seconds
                if not math.isfinite(step_loss):
                    raise NonFiniteError(f"LRCL: the loss became {step_loss} at step {self.global_step}; lower the "
                                         "learning rate or use bf16 instead of fp16 (this step was not saved)")
                # one flag for every trainable tensor, agreed by all processes (a NaN update that the next loss
                # would only show one step later, or never after the last step)
                finite = torch.stack([torch.isfinite(p.detach()).all() for p in trainable]).all().float() \
                    if trainable else torch.ones((), device=accelerator.device)
                if float(accelerator.reduce(finite, reduction="mean")) < 1.0:
                    raise NonFiniteError(f"LRCL: a trainable weight became NaN or inf at step {self.global_step}; "
                                         "lower the learning rate or use bf16 instead of fp16 (this step was not "
                                         "saved)")
                temperature = self.accelerator.unwrap_model(self.model).loss.temperature().item()
                self.history["train"].append({"step": self.global_step, "loss": step_loss,
                                              "learning_rate": self.scheduler.get_last_lr()[0],
                                              "temperature": temperature, "seconds": step_seconds})
                window_losses.append(step_loss)
                progress.update(1)
                progress.set_postfix(loss=f"{step_loss:.4f}")
                if self.global_step % config.logging_steps == 0 or self.global_step == self.max_steps:
                    elapsed = time.perf_counter() - window_start
                    accelerator.log({"train_loss": float(np.mean(window_losses)), "temperature": temperature,
                                     "learning_rate": self.scheduler.get_last_lr()[0],
                                     "items_per_second": len(window_losses) * items_per_step / max(elapsed, 1e-9)},
                                    step=self.global_step)
                    window_losses, window_start = [], time.perf_counter()
                if config.eval_steps > 0 and self.global_step % config.eval_steps == 0:
                    self._record_eval()
                saved = config.save_steps > 0 and self.global_step % config.save_steps == 0
                if saved:
                    self.save_checkpoint()
                if self._stop_agreed(stop):
                    if not saved:
                        self.save_checkpoint()
                    progress.close()
                    raise KeyboardInterrupt(f"{stop.requested or 'stop'}: LRCL stopped after step {self.global_step} "
                                            "and saved its checkpoint; resume with --resume_from_checkpoint latest")
        progress.close()
        if not self.history["eval"] or self.history["eval"][-1]["step"] != self.global_step:
            self._record_eval()
        self.save_model()
        accelerator.end_training()
        last_train = self.history["train"][-1] if self.history["train"] else {}
        last_eval = self.history["eval"][-1] if self.history["eval"] else {}
        return {"global_step": self.global_step, "train_loss": last_train.get("loss"),
                "train_seconds": self.train_seconds, **last_eval}

    def _stop_agreed(self, stop: StopRequests) -> bool:
        """Whether any process was asked to stop: every process must agree, or the checkpoint's collectives hang."""
        asked = torch.tensor(float(stop.requested is not None), device=self.accelerator.device)
        if self.accelerator.num_processes > 1:
            asked = self.accelerator.reduce(asked, reduction="sum")
        return bool(asked > 0)
