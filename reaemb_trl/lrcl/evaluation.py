"""LRCL's held-out evaluation: the contrastive loss over all held-out items in one batch, and top-1 view retrieval
among them, recorded in the trainer's history and its trackers."""

from __future__ import annotations

import torch
from torch import nn


def view_retrieval_accuracy(view_a: torch.Tensor, view_b: torch.Tensor) -> float:
    """Share of items whose other view is its nearest neighbour (cosine) among all items' other views, both ways."""
    sims = nn.functional.normalize(view_a.float(), dim=-1) @ nn.functional.normalize(view_b.float(), dim=-1).T
    target = torch.arange(sims.shape[0])
    hits = (sims.argmax(dim=1) == target).float().mean() + (sims.argmax(dim=0) == target).float().mean()
    return float(hits / 2)


class EvaluationMixin:
    """`LRCLTrainer`'s evaluation. Reads `accelerator`, `model`, `config.eval_batch_size`, `eval_item_ids`,
    `eval_views`, `_tokenize` and `global_step`; appends to `history["eval"]`."""

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

    def _record_eval(self) -> dict[str, float]:
        metrics = self.evaluate()
        if metrics:
            self.history["eval"].append({"step": self.global_step, **metrics})
            self.accelerator.log(metrics, step=self.global_step)
        return metrics
