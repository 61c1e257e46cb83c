"""Contrastive losses of the LRCL stage, chosen by name; each takes the two views' embeddings [B, d]."""

from __future__ import annotations

from torch import nn

from .infonce import InfoNCELoss
from .soft_clip import SoftCLIPLoss

LOSSES: dict[str, type[nn.Module]] = {"soft_clip": SoftCLIPLoss, "infonce": InfoNCELoss}


def build_loss(name: str, temperature: float | None = None, learnable_temperature: bool = True,
               min_temperature: float = 1e-3) -> nn.Module:
    if name not in LOSSES:
        raise KeyError(f"unknown LRCL loss {name!r} (known: {sorted(LOSSES)})")
    return LOSSES[name](temperature=temperature, learnable_temperature=learnable_temperature,
                        min_temperature=min_temperature)


__all__ = ["LOSSES", "InfoNCELoss", "SoftCLIPLoss", "build_loss"]
