"""Pickle-free training state: optimizer, LR schedule, gradient scaler and RNG states as safetensors + JSON.

A state dict is stored as `<name>.json` (its structure, with every tensor replaced by a reference) and
`<name>.safetensors` (the tensors, under flattened keys such as `state.0.exp_avg`). Tuples, dicts with non-string
keys (the optimizer's parameter indices) and numpy arrays are tagged in the JSON, so the loaded dict is what
`load_state_dict` expects, value for value: resuming is bit-identical to not stopping.
"""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import InputError
from .io_utils import atomic_path, write_json

OPTIMIZER_STATE = "optimizer"
SCHEDULER_STATE = "scheduler"
SCALER_STATE = "scaler"
TRAINING_ARGS_FILE = "training_args.json"

_TENSOR, _TUPLE, _ITEMS, _NDARRAY = "__tensor__", "__tuple__", "__items__", "__ndarray__"
_TAGS = {_TENSOR, _TUPLE, _ITEMS, _NDARRAY}


def _join(key: str, part) -> str:
    return f"{key}.{part}" if key else str(part)


def _encode(value: Any, key: str, tensors: dict[str, torch.Tensor], storages: set[int]) -> Any:
    """JSON-ready copy of `value`; its tensors go into `tensors` under their path."""
    if isinstance(value, torch.Tensor):
        if key in tensors:
            raise ValueError(f"two tensors of the state share the key {key!r}")
        tensor = value.detach().cpu().contiguous()
        storage = tensor.untyped_storage().data_ptr()
        # safetensors refuses tensors that share memory (bitsandbytes gives every parameter the same qmap).
        tensors[key] = tensor.clone() if storage in storages else tensor
        storages.add(storage)
        return {_TENSOR: key}
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v, _join(key, i), tensors, storages) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, _join(key, i), tensors, storages) for i, v in enumerate(value)]
    if isinstance(value, dict):
        children = {k: _encode(v, _join(key, k), tensors, storages) for k, v in value.items()}
        if all(isinstance(k, str) for k in children) and not _TAGS & children.keys():
            return children
        return {_ITEMS: [[_encode(k, "", {}, set()), v] for k, v in children.items()]}
    if isinstance(value, np.ndarray):
        return {_NDARRAY: value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"training state: cannot store a {type(value).__name__} (at {key!r})")


def _decode(value: Any, tensors: dict[str, torch.Tensor], where: Path) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors, where) for v in value]
    if not isinstance(value, dict):
        return value
    if _TENSOR in value:
        if value[_TENSOR] not in tensors:
            raise InputError(f"{where}: tensor {value[_TENSOR]!r} is missing")
        return tensors[value[_TENSOR]]
    if _TUPLE in value:
        return tuple(_decode(v, tensors, where) for v in value[_TUPLE])
    if _ITEMS in value:
        return {_decode(k, tensors, where): _decode(v, tensors, where) for k, v in value[_ITEMS]}
    if _NDARRAY in value:
        return np.array(value[_NDARRAY], dtype=value["dtype"])
    return {k: _decode(v, tensors, where) for k, v in value.items()}


def has_state(folder: str | os.PathLike, name: str) -> bool:
    return (Path(folder) / f"{name}.json").is_file()


def save_state(state: dict, folder: str | os.PathLike, name: str) -> None:
    """Write `state` (a state dict) as `<name>.safetensors` (only if it holds tensors) + `<name>.json`, atomically."""
    folder = Path(folder)
    tensors: dict[str, torch.Tensor] = {}
    structure = _encode(state, "", tensors, set())
    if tensors:
        with atomic_path(folder / f"{name}.safetensors") as tmp:
            save_file(tensors, str(tmp))
    write_json(folder / f"{name}.json", structure)  # last: the JSON is the record that the state is complete


def load_state(folder: str | os.PathLike, name: str) -> dict:
    """The state dict `save_state` wrote; tensors on the CPU (`load_state_dict` moves them to the parameters)."""
    folder = Path(folder)
    record = folder / f"{name}.json"
    if not record.is_file():
        raise InputError(f"{record}: training state file not found")
    try:
        structure = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{record}: unreadable training state ({err})") from err
    tensor_file = folder / f"{name}.safetensors"
    try:
        tensors = load_file(str(tensor_file)) if tensor_file.is_file() else {}
    except (OSError, SafetensorError) as err:
        raise InputError(f"{tensor_file}: unreadable training state ({err})") from err
    return _decode(structure, tensors, tensor_file)


def save_training_state(folder: str | os.PathLike, optimizer, scheduler, scaler=None) -> None:
    save_state(optimizer.state_dict(), folder, OPTIMIZER_STATE)
    save_state(scheduler.state_dict(), folder, SCHEDULER_STATE)
    if scaler is not None:
        save_state(scaler.state_dict(), folder, SCALER_STATE)


def has_training_state(folder: str | os.PathLike) -> bool:
    return has_state(folder, OPTIMIZER_STATE)


def load_training_state(folder: str | os.PathLike, optimizer, scheduler, scaler=None) -> None:
    optimizer.load_state_dict(load_state(folder, OPTIMIZER_STATE))
    scheduler.load_state_dict(load_state(folder, SCHEDULER_STATE))
    if scaler is not None:
        scaler.load_state_dict(load_state(folder, SCALER_STATE))


# ------------------------------------------------------------------------------------------------------ RNG
def rng_state_name(process_index: int | None = None) -> str:
    return "rng_state" if process_index is None else f"rng_state_{process_index}"


def get_rng_states() -> dict:
    """Python `random`, numpy's global generator, torch on the CPU and on every CUDA device."""
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["cpu"])
    if "cuda" in states and torch.cuda.is_available():
        for device, state in enumerate(states["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state, device)


def save_rng_state(folder: str | os.PathLike, process_index: int | None = None) -> None:
    save_state(get_rng_states(), folder, rng_state_name(process_index))


def load_rng_state(folder: str | os.PathLike, process_index: int | None = None) -> None:
    set_rng_states(load_state(folder, rng_state_name(process_index)))


# ---------------------------------------------------------------------------------------- transformers Trainer
class SafeCheckpointMixin:
    """Pickle-free checkpoints for a transformers `Trainer` subclass; list it before the trainer class.

    Single process and DDP: the optimizer, schedule and gradient scaler go to `optimizer` / `scheduler` / `scaler`
    (.json + .safetensors, written by the main process), the RNG states to `rng_state` (one process) or
    `rng_state_<rank>` (several), and the training arguments to `training_args.json` instead of
    `training_args.bin`. DeepSpeed, FSDP, XLA and SageMaker model parallelism shard or place the state their own
    way: there the parent's (torch.save) implementation is used unchanged. Loading reads either format, so
    checkpoints written before still resume; a folder with neither optimizer format is refused with an InputError.
    """

    def _keeps_parent_checkpoint_format(self) -> bool:
        from transformers.utils import is_sagemaker_mp_enabled, is_torch_xla_available

        return (self.is_deepspeed_enabled or self.is_fsdp_enabled or is_torch_xla_available()
                or is_sagemaker_mp_enabled())

    def _rng_process_index(self) -> int | None:
        return self.args.process_index if self.args.world_size > 1 else None

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        from transformers.trainer import TRAINING_ARGS_NAME

        super()._save(output_dir, state_dict)
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if self.args.should_save:
            os.remove(os.path.join(output_dir, TRAINING_ARGS_NAME))
            with atomic_path(os.path.join(output_dir, TRAINING_ARGS_FILE)) as tmp:
                tmp.write_text(self.args.to_json_string(), encoding="utf-8")

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        if self._keeps_parent_checkpoint_format():
            return super()._save_optimizer_and_scheduler(output_dir)
        if self.args.should_save:
            save_training_state(output_dir, self.optimizer, self.lr_scheduler)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        from transformers.trainer import OPTIMIZER_NAME, OPTIMIZER_NAME_BIN

        if checkpoint is not None and not self._keeps_parent_checkpoint_format():
            if has_training_state(checkpoint):
                load_training_state(checkpoint, self.optimizer, self.lr_scheduler)
            elif not any(os.path.isfile(os.path.join(checkpoint, n)) for n in (OPTIMIZER_NAME, OPTIMIZER_NAME_BIN)):
                raise InputError(f"{os.path.join(checkpoint, OPTIMIZER_STATE + '.json')}: no optimizer state in "
                                 f"the checkpoint (nor {OPTIMIZER_NAME}); it cannot be resumed")
        # The parents still run: the Trainer finds no torch.save files beside ours and loads nothing, and
        # subclasses (TRL's GRPOTrainer) restore their own extra state here.
        super()._load_optimizer_and_scheduler(checkpoint)

    def _save_scaler(self, output_dir: str) -> None:
        scaler = getattr(self.accelerator, "scaler", None)
        if scaler is None or self._keeps_parent_checkpoint_format():
            return super()._save_scaler(output_dir)
        if self.args.should_save:
            save_state(scaler.state_dict(), output_dir, SCALER_STATE)

    def _load_scaler(self, checkpoint: str | None) -> None:
        scaler = getattr(self.accelerator, "scaler", None)
        if checkpoint is not None and scaler is not None and has_state(checkpoint, SCALER_STATE):
            return scaler.load_state_dict(load_state(checkpoint, SCALER_STATE))
        return super()._load_scaler(checkpoint)

    def _save_rng_state(self, output_dir: str) -> None:
        if self._keeps_parent_checkpoint_format():
            return super()._save_rng_state(output_dir)
        save_rng_state(output_dir, self._rng_process_index())

    def _load_rng_state(self, checkpoint: str | None) -> None:
        if checkpoint is None or not has_state(checkpoint, rng_state_name(self._rng_process_index())):
            return super()._load_rng_state(checkpoint)  # an older checkpoint, or the parent's note that none exists
        load_rng_state(checkpoint, self._rng_process_index())


# ---------------------------------------------------------------------------------------------- checkpoint layout
# Both stages write `OUTPUT/checkpoint-N/` with `trainer_state.json` written last, so a folder without it is what a
# kill left behind and no checkpoint. LATEST: the resume_from_checkpoint values that mean "the newest one".
CHECKPOINT_MARKER = "trainer_state.json"
LATEST = ("latest", "true", "True")
_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_folders(output_dir: str | os.PathLike) -> list[Path]:
    """The complete `checkpoint-N` folders of a stage's output folder, oldest first."""
    output = Path(output_dir)
    found = [(int(m.group(1)), p) for p in output.glob("checkpoint-*")
             if (m := _CHECKPOINT_NAME.match(p.name)) and (p / CHECKPOINT_MARKER).is_file()] if output.is_dir() else []
    return [p for _, p in sorted(found)]


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    folders = checkpoint_folders(output_dir)
    return folders[-1] if folders else None


def resolve_resume(value: str | None, output_dir: str | os.PathLike) -> str | None:
    """`latest` / `true` -> the newest complete checkpoint of `output_dir` (an InputError if none); a path stays."""
    if value not in LATEST:
        return value
    found = latest_checkpoint(output_dir)
    if found is None:
        raise InputError(f"{output_dir}: no checkpoint-N folder to resume from (resume_from_checkpoint={value})")
    return str(found)
