"""Stage 1 of ReaEmb: contrastive training of the embedder on two views of each item, as an Accelerate loop.

The same code runs on one CPU, one GPU and under `accelerate launch` / `torchrun`. Every step's items and views
are a function of (seed, position in the item stream), so resuming only needs the step number, the trainable
weights, the optimizer, the schedule and the torch RNG (LoRA dropout): N straight steps and N/2 + resume + N/2
give the same parameters.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from safetensors.torch import save_file
from torch import nn
from tqdm.auto import tqdm

from ..curves import plot_log_history
from ..data import PreparedDataset
from ..errors import InputError
from ..hub import write_model_card
from ..io_utils import OutputGuard, atomic_path, scratch, sha256_json, staged_update, write_json
from ..launch import StopRequests, gpu_less_multiprocess
from ..recipe import config_to_dict
from ..training_state import (
    CHECKPOINT_MARKER,
    checkpoint_folders,
    has_state,
    has_training_state,
    load_rng_state,
    load_training_state,
    resolve_resume,
    rng_state_name,
    save_rng_state,
    save_training_state,
)
from ..validation import NonFiniteError
from .losses import LOSSES, build_loss
from .lrcl_config import LRCLConfig
from .views import ViewSampler

CURVES_FILE = "lrcl_curves.png"
CHECKPOINT_WEIGHTS = "model.safetensors"  # also the name accelerate writes for the first prepared model
# An output folder holds a run once it has a checkpoint or the finished model (trainer_state.json, written last).
RUN_MARKERS = (CHECKPOINT_MARKER, f"checkpoint-*/{CHECKPOINT_MARKER}")
# Stream namespaces of the view sampler and of the item order, so they never share random numbers.
_TRAIN_VIEWS, _EVAL_VIEWS, _ITEM_ORDER, _EVAL_SPLIT = 1, 2, 3, 4


class ContrastiveEmbedder(nn.Module):
    """The embedder and the loss in one module, so one DDP wrapper covers LoRA, the thought module and τ.

    Input: a tokenised batch of 2B texts, the B first views then the B second views of the same items.
    """

    def __init__(self, embedder: nn.Module, loss: nn.Module, use_thought: bool = True,
                 gather_negatives: bool = True, execution_path: str | None = None):
        super().__init__()
        self.embedder = embedder
        self.loss = loss
        self.use_thought = use_thought
        self.gather_negatives = gather_negatives
        self.execution_path = execution_path

    @property
    def _no_split_modules(self) -> list[str]:
        # FSDP's transformer wrap policy reads this from the prepared model: the backbone's decoder layers, one by one.
        return list(self.embedder._no_split_modules or [])

    def embed(self, **batch) -> torch.Tensor:
        out = self.embedder(**batch, use_thought=self.use_thought, execution_path=self.execution_path)
        return out.embeddings.float()

    def forward(self, **batch) -> torch.Tensor:
        view_a, view_b = self.embed(**batch).chunk(2)
        if self.gather_negatives and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # all_gather that carries the gradient back to each process's own rows.
            view_a = torch.cat(dist_nn.all_gather(view_a))
            view_b = torch.cat(dist_nn.all_gather(view_b))
        with torch.autocast(device_type=view_a.device.type, enabled=False):  # similarities and softmax in fp32
            return self.loss(view_a, view_b)


def view_retrieval_accuracy(view_a: torch.Tensor, view_b: torch.Tensor) -> float:
    """Share of items whose other view is its nearest neighbour (cosine) among all items' other views, both ways."""
    sims = nn.functional.normalize(view_a.float(), dim=-1) @ nn.functional.normalize(view_b.float(), dim=-1).T
    target = torch.arange(sims.shape[0])
    hits = (sims.argmax(dim=1) == target).float().mean() + (sims.argmax(dim=0) == target).float().mean()
    return float(hits / 2)


def build_embedder(config: LRCLConfig):
    """The embedder the config describes: backbone + thought module, LoRA (on a 4-bit backbone for QLoRA)."""
    from ..embedder import LatentReasoningEmbedder

    embedder = LatentReasoningEmbedder.from_backbone(config.model_name_or_path, config.embedder_options())
    embedder.config.similarity = LOSSES[config.loss].similarity  # saved with the model: export and CRRL read it
    if config.no_thought:
        # Frozen, so DDP does not wait for gradients that never come (config.use_thought is False: export embeds
        # the same way).
        for param in embedder.thought_module.parameters():
            param.requires_grad_(False)
    if config.activation_checkpointing:
        embedder.backbone_model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False})
    return embedder


def build_optimizer(params: list[nn.Parameter], config: LRCLConfig) -> torch.optim.Optimizer:
    """AdamW from torch, or bitsandbytes' 8-bit / paged AdamW (paged falls back to plain on CPU)."""
    kwargs = {"lr": config.learning_rate, "weight_decay": config.weight_decay}
    if config.optim == "adamw_torch":
        return torch.optim.AdamW(params, **kwargs)
    import bitsandbytes as bnb

    optimizer_cls = {"adamw_8bit": bnb.optim.AdamW8bit, "paged_adamw_8bit": bnb.optim.PagedAdamW8bit,
                     "paged_adamw_32bit": bnb.optim.PagedAdamW32bit}[config.optim]
    return optimizer_cls(params, **kwargs)


def _full_tensor(param: torch.Tensor) -> torch.Tensor:
    """The whole tensor of an FSDP2 shard (a collective: every process must call it), else the tensor itself."""
    from torch.distributed.tensor import DTensor

    return param.full_tensor() if isinstance(param, DTensor) else param


# what may differ between the run that wrote a checkpoint and the one resuming it (the similarity follows the loss,
# which the config already fingerprints)
_NOT_FINGERPRINTED = ("transformers_version", "dtype", "torch_dtype", "similarity")


def _model_fingerprint(config_dict: dict, trainable: dict[str, list[int]]) -> str:
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items()
                    if "name_or_path" not in str(k) and k not in _NOT_FINGERPRINTED}
        return value

    return sha256_json({"config": strip(config_dict), "trainable": trainable})


class LRCLTrainer:
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
        self.fingerprint = _model_fingerprint(
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

    # ----------------------------------------------------------------- data
    def _split_items(self) -> None:
        ds, config = self.dataset, self.config
        where = getattr(ds, "path", config.dataset_dir)
        if not ds.has_text:
            raise InputError(f"{where}: the dataset has no item text, and LRCL needs item text to build views")
        attributes = [[]] + [ds.item_attributes(i) for i in range(1, ds.num_items + 1)]
        with_text = np.array([i for i in range(1, ds.num_items + 1) if attributes[i]], dtype=np.int64)
        num_eval = min(config.eval_items, len(with_text) // 2)
        if len(with_text) - num_eval < 2:
            raise InputError(f"{where}: {len(with_text)} items have text; with {num_eval} held out for evaluation, "
                             f"{len(with_text) - num_eval} remain and LRCL needs at least 2 to train on "
                             "(lower eval_items or add item text)")
        order = np.random.default_rng([config.seed, _EVAL_SPLIT]).permutation(with_text)
        self.eval_item_ids = np.sort(order[:num_eval])
        self.train_item_ids = np.sort(order[num_eval:])
        self.train_views = ViewSampler(attributes, config.view_drop_ratio, config.seed, _TRAIN_VIEWS)
        self.eval_views = ViewSampler(attributes, config.view_drop_ratio, config.seed, _EVAL_VIEWS)
        self._epoch_orders: dict[int, np.ndarray] = {}

    def stream_items(self, positions: np.ndarray) -> np.ndarray:
        """Item at each position of the training stream: epoch after epoch, each a seeded permutation."""
        num_train = len(self.train_item_ids)
        epochs, offsets = np.divmod(np.asarray(positions, dtype=np.int64), num_train)
        items = np.empty_like(epochs)
        for epoch in np.unique(epochs):
            if epoch not in self._epoch_orders:
                self._epoch_orders = {e: o for e, o in self._epoch_orders.items() if e >= epoch - 1}
                rng = np.random.default_rng([self.config.seed, _ITEM_ORDER, int(epoch)])
                self._epoch_orders[epoch] = rng.permutation(self.train_item_ids)
            mask = epochs == epoch
            items[mask] = self._epoch_orders[epoch][offsets[mask]]
        return items

    def micro_batch_positions(self, micro_step: int) -> np.ndarray:
        """This process's share of the stream positions of one micro-step (the global micro-batch is contiguous)."""
        per_device = self.config.per_device_train_batch_size
        start = (micro_step * self.accelerator.num_processes + self.accelerator.process_index) * per_device
        return np.arange(start, start + per_device)

    def view_texts(self, positions: np.ndarray) -> tuple[list[str], list[str]]:
        return self.train_views.pairs(self.stream_items(positions), positions)

    def _tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        batch = self.accelerator.unwrap_model(self.model).embedder.tokenize(texts)
        return {key: value.to(self.accelerator.device) for key, value in batch.items()}

    # ----------------------------------------------------------- evaluation
    @torch.no_grad()
    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        """Embeddings of `texts` in order, the work split across processes."""
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        with self.accelerator.split_between_processes(list(range(len(texts))), apply_padding=True) as indices:
            chunks = []
            for start in range(0, len(indices), self.config.eval_batch_size):
                batch = self._tokenize([texts[i] for i in indices[start:start + self.config.eval_batch_size]])
                with self.accelerator.autocast():
                    chunks.append(model.embed(**batch))
            local = torch.cat(chunks)
        model.train(was_training)
        return self.accelerator.gather(local)[: len(texts)].cpu()

    def evaluate(self) -> dict[str, float]:
        """Held-out contrastive loss (all held-out items in one batch) and top-1 view retrieval among them."""
        if len(self.eval_item_ids) == 0:
            return {}
        texts_a, texts_b = self.eval_views.pairs(self.eval_item_ids, self.eval_item_ids)
        embeddings = self.embed_texts(texts_a + texts_b)
        view_a, view_b = embeddings.chunk(2)
        loss_fn = self.accelerator.unwrap_model(self.model).loss
        with torch.no_grad():
            loss = float(loss_fn(view_a.to(self.accelerator.device), view_b.to(self.accelerator.device)))
        return {"eval_loss": loss, "eval_top1": view_retrieval_accuracy(view_a, view_b),
                "eval_items": len(self.eval_item_ids)}

    # ----------------------------------------------------------- checkpoints
    def _trainable_weights(self, model: nn.Module) -> dict[str, torch.Tensor]:
        # Frozen backbone weights are rebuilt from model_name_or_path: checkpoints hold the trained ones only.
        unwrapped = self.accelerator.unwrap_model(model)
        return {name: _full_tensor(p).detach().contiguous()
                for name, p in unwrapped.named_parameters() if p.requires_grad}

    def _restore_trainable_weights(self, models, input_dir) -> None:
        from safetensors.torch import load_file

        path = Path(input_dir) / CHECKPOINT_WEIGHTS
        if not path.is_file():
            raise InputError(f"{input_dir}: not an LRCL checkpoint ({CHECKPOINT_WEIGHTS} missing)")
        state = load_file(str(path))  # on the CPU: load_state_dict copies onto each parameter's device
        saved = {name: list(tensor.shape) for name, tensor in state.items()}
        if saved != self.trainable:
            differing = sorted(set(saved).symmetric_difference(self.trainable)) or \
                sorted(n for n in saved if saved[n] != self.trainable[n])
            raise InputError(f"{path}: the checkpoint's trainable weights do not fit this model "
                             f"(e.g. {differing[:3]}): it comes from a different model or settings")
        for model in models:
            self.accelerator.unwrap_model(model).load_state_dict(state, strict=False)

    # accelerate's save_state / load_state hooks, used where its format is kept (DeepSpeed, FSDP).
    def _keep_trainable_weights(self, models, weights, output_dir) -> None:
        for i, model in enumerate(models[: len(weights)]):
            weights[i] = self._trainable_weights(model)

    def _load_trainable_weights(self, models, input_dir) -> None:
        if not models:  # DeepSpeed and FSDP loaded the weights from their own files
            return
        self._restore_trainable_weights(models, input_dir)
        models.clear()  # loaded here: accelerate must not load the full state dict it expects

    def _safe_checkpoints(self) -> bool:
        """Whether checkpoints use `training_state` (safetensors + JSON) rather than accelerate's pickles.

        True where every process holds the whole optimizer state on a CPU or CUDA device (one process, DDP);
        DeepSpeed, FSDP and other back-ends shard or place it their own way and keep `accelerator.save_state`.
        """
        from accelerate.utils import DistributedType

        return (self.accelerator.distributed_type in (DistributedType.NO, DistributedType.MULTI_CPU,
                                                       DistributedType.MULTI_GPU)
                and self.accelerator.device.type in ("cpu", "cuda"))

    def save_checkpoint(self) -> Path:
        final = self.output_dir / f"checkpoint-{self.global_step}"
        # every process writes into one marked scratch folder: what a kill leaves, the next run's guard removes
        staging = scratch(final, fixed=True, create=self.accelerator.is_main_process)
        if self.accelerator.is_main_process:
            staging.mkdir()
        self.accelerator.wait_for_everyone()
        if self._safe_checkpoints():
            if self.accelerator.is_main_process:
                with atomic_path(staging / CHECKPOINT_WEIGHTS) as tmp:
                    save_file(self._trainable_weights(self.model), str(tmp))
                save_training_state(staging, self.optimizer, self.scheduler, self.accelerator.scaler)
            save_rng_state(staging, self.accelerator.process_index)
            self.accelerator.wait_for_everyone()
        else:
            self.accelerator.save_state(str(staging))
        if self.accelerator.is_main_process:
            write_json(staging / CHECKPOINT_MARKER, {
                "global_step": self.global_step, "model": self.config.model_name_or_path,
                "model_fingerprint": self.fingerprint, "num_processes": self.accelerator.num_processes,
                "history": self.history})
            shutil.rmtree(final, ignore_errors=True)
            os.replace(staging, final)
            shutil.rmtree(staging.parent)
            for old in checkpoint_folders(self.output_dir)[: -self.config.save_total_limit]:
                shutil.rmtree(old)
        self.accelerator.wait_for_everyone()
        return final

    def _resolve_checkpoint(self, value: str) -> Path:
        path = Path(resolve_resume(value, self.output_dir))
        if not (path / CHECKPOINT_MARKER).is_file():
            raise InputError(f"{path}: not a checkpoint folder ({CHECKPOINT_MARKER} missing)")
        return path

    def resume(self, value: str) -> Path:
        path = self._resolve_checkpoint(value)
        try:
            meta = json.loads((path / CHECKPOINT_MARKER).read_text(encoding="utf-8"))
            step, fingerprint = int(meta["global_step"]), meta["model_fingerprint"]
        except (ValueError, KeyError, TypeError) as err:
            raise InputError(f"{path / CHECKPOINT_MARKER}: unreadable checkpoint record ({err})") from err
        if fingerprint != self.fingerprint:
            raise InputError(f"{path}: the checkpoint comes from a different model (trained from "
                             f"{meta.get('model')!r}; this run uses {self.config.model_name_or_path!r}, whose "
                             "architecture or trainable weights differ)")
        if step > self.max_steps:
            raise InputError(f"{path}: checkpoint at step {step} is past max_steps={self.max_steps}")
        if has_training_state(path):
            self._restore_trainable_weights([self.model], path)
            load_training_state(path, self.optimizer, self.scheduler, self.accelerator.scaler)
            rng_index = self.accelerator.process_index
            if has_state(path, rng_state_name(rng_index)):
                load_rng_state(path, rng_index)
            else:  # a run resumed on more processes than it was saved from
                warnings.warn(f"{path}: no RNG state for process {rng_index}; LoRA dropout will not replay exactly")
        elif (path / "optimizer.bin").is_file() or not self._safe_checkpoints():
            self.accelerator.load_state(str(path))  # DeepSpeed / FSDP, or a checkpoint written before
        else:
            raise InputError(f"{path / 'optimizer.json'}: the checkpoint holds no optimizer state")
        self.global_step = step
        self.history = meta.get("history", {"train": [], "eval": []})
        return path

    # -------------------------------------------------------------- training
    def _record_eval(self) -> dict[str, float]:
        metrics = self.evaluate()
        if metrics:
            self.history["eval"].append({"step": self.global_step, **metrics})
            self.accelerator.log(metrics, step=self.global_step)
        return metrics

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

    # ---------------------------------------------------------------- output
    def _unsharded_embedder(self):
        """The embedder to save. Under FSDP every process holds a shard of each weight and the embedder's own save
        writes weights as they are, so the main process saves a plain copy, built like this one, that holds the
        trained weights gathered whole (every process must call this)."""
        from accelerate.utils import DistributedType

        embedder = self.accelerator.unwrap_model(self.model).embedder
        if self.accelerator.distributed_type != DistributedType.FSDP:
            return embedder
        weights = self._trainable_weights(self.model)
        if not self.accelerator.is_main_process:
            return None
        if not self.config.model_name_or_path:
            raise InputError("LRCL under FSDP saves by rebuilding the embedder: set model_name_or_path")
        plain, prefix = build_embedder(self.config), "embedder."
        unexpected = plain.load_state_dict({name[len(prefix):]: tensor.cpu() for name, tensor in weights.items()
                                            if name.startswith(prefix)}, strict=False).unexpected_keys
        if unexpected:
            raise RuntimeError(f"LRCL: the rebuilt embedder lacks trained weights {unexpected[:3]}")
        return plain

    def save_model(self) -> Path:
        """Write the embedder folder + lrcl_config.json + trainer_state.json + lrcl_curves.png into `output_dir`.

        Everything is written to a temporary folder first and moved in file by file, trainer_state.json last,
        so a folder with trainer_state.json is complete.
        """
        accelerator = self.accelerator
        accelerator.wait_for_everyone()
        embedder = self._unsharded_embedder()
        if accelerator.is_main_process:
            with staged_update(self.output_dir, last="trainer_state.json") as staging:
                embedder.save_pretrained(staging)
                write_json(staging / "lrcl_config.json", {
                    **config_to_dict(self.config), "num_processes": accelerator.num_processes,
                    "resolved_mixed_precision": accelerator.mixed_precision,
                    "dataset_sha256": getattr(self.dataset, "sha256", None),
                    "train_items": len(self.train_item_ids), "eval_item_ids": self.eval_item_ids.tolist()})
                plot_curves(self.history, staging / CURVES_FILE)
                write_model_card(staging, stage="lrcl", backbone=self.config.model_name_or_path,
                                 settings=config_to_dict(self.config),
                                 dataset_sha256=getattr(self.dataset, "sha256", None),
                                 metrics=_heldout_metrics(self.history["eval"]), repo_id=self.config.hub_model_id)
                write_json(staging / "trainer_state.json", {
                    "global_step": self.global_step, "max_steps": self.max_steps,
                    "items_per_step": (self.config.per_device_train_batch_size * accelerator.num_processes
                                       * self.config.gradient_accumulation_steps),
                    "train_seconds_this_session": self.train_seconds,
                    "log_history": self.history["train"], "eval_history": self.history["eval"]})
        accelerator.wait_for_everyone()
        return self.output_dir


def _heldout_metrics(evaluations: list[dict]) -> dict[str, float]:
    """Held-out loss and view top-1 before and after training, for the model card."""
    if not evaluations:
        return {}
    return {f"{key} ({when})": evaluations[index][key] for when, index in (("start", 0), ("end", -1))
            for key in ("eval_loss", "eval_top1") if key in evaluations[index]}


def plot_curves(history: dict[str, list[dict]], path: Path) -> bool:
    """Training loss per step, held-out loss and held-out view top-1 at each evaluation, each on its own axes: a
    batch loss and a held-out loss over other items and batch sizes are not comparable numbers."""
    panels = {"training loss (batch)": ["loss"], "held-out loss": ["eval_loss"], "held-out view top-1": ["eval_top1"]}
    return plot_log_history(history["train"] + history["eval"], panels, path)
