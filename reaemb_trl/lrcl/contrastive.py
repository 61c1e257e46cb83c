"""The module LRCL trains: the embedder and the contrastive loss in one `nn.Module`, so that one DDP wrapper (or
FSDP / DeepSpeed engine) covers LoRA, the thought module and the learnable temperature τ."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from torch import nn


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
