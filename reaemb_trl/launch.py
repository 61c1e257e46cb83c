"""How a run was launched: what both training stages need to know before they build their Accelerator."""

from __future__ import annotations

import os
import signal
import warnings

import torch


def gpu_less_multiprocess(stage: str) -> bool:
    """True when several processes were launched (`torchrun`, `accelerate launch --multi_gpu`) on a machine without
    an accelerator. accelerate then forms one gloo group only when told the device is the CPU; otherwise every rank
    would silently train alone. DeepSpeed and FSDP are set up on accelerator devices only, so on CPUs such a run is
    plain DDP, which is said once."""
    gpu_less = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.accelerator.is_available()
    engine = next((name for name in ("DEEPSPEED", "FSDP")
                   if os.environ.get(f"ACCELERATE_USE_{name}", "").lower() == "true"), None)
    if gpu_less and engine:
        warnings.warn(f"{stage}: {engine} was asked for but no accelerator is available: training as DDP on the CPU")
    return gpu_less


class StopRequests:
    """While active (`with StopRequests() as stop:`), SIGTERM and SIGINT only record that a stop was asked for;
    a training loop checks `stop.requested` between optimizer steps, writes a checkpoint and stops, so a resume loses
    at most the step that was running. Outside the main thread (no signals there) it records nothing."""

    def __init__(self):
        self.requested: str | None = None  # the signal's name once one arrived
        self._previous: dict[int, object] = {}

    def _record(self, signum, frame) -> None:
        self.requested = signal.Signals(signum).name

    def __enter__(self) -> "StopRequests":
        try:
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._record)
        except ValueError:  # not the main thread
            self._previous.clear()
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
