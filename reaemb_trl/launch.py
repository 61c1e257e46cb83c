"""How a run was launched: what both training stages need to know before they build their Accelerator."""

from __future__ import annotations

import os
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
