"""LRCL's checkpoints: `OUTPUT/checkpoint-N/` with the trainable weights only, the optimizer / schedule / scaler
and RNG states (`training_state`: safetensors + JSON, or accelerate's own format under DeepSpeed and FSDP) and
trainer_state.json, written last; resuming checks that the checkpoint comes from the same model and settings."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from ..errors import InputError
from ..io_utils import atomic_path, scratch, sha256_json, write_json
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

CHECKPOINT_WEIGHTS = "model.safetensors"  # also the name accelerate writes for the first prepared model
# An output folder holds a run once it has a checkpoint or the finished model (trainer_state.json, written last).
RUN_MARKERS = (CHECKPOINT_MARKER, f"checkpoint-*/{CHECKPOINT_MARKER}")


def _full_tensor(param: torch.Tensor) -> torch.Tensor:
    """The whole tensor of an FSDP2 shard (a collective: every process must call it), else the tensor itself."""
    from torch.distributed.tensor import DTensor

    return param.full_tensor() if isinstance(param, DTensor) else param


# what may differ between the run that wrote a checkpoint and the one resuming it (the similarity follows the loss,
# which the config already fingerprints)
_NOT_FINGERPRINTED = ("transformers_version", "dtype", "torch_dtype", "similarity")


def model_fingerprint(config_dict: dict, trainable: dict[str, list[int]]) -> str:
    """What a checkpoint must match to be resumed: the model's settings (less the keys above and any path) and the
    names and shapes of its trainable weights."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items()
                    if "name_or_path" not in str(k) and k not in _NOT_FINGERPRINTED}
        return value

    return sha256_json({"config": strip(config_dict), "trainable": trainable})


class CheckpointMixin:
    """`LRCLTrainer`'s checkpoints. Reads `accelerator`, `model`, `optimizer`, `scheduler`, `config`, `output_dir`,
    `trainable`, `fingerprint` and `max_steps`; `resume` sets `global_step` and `history`."""

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
