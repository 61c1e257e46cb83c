"""LRCL's output folder: the embedder (gathered whole first under FSDP), lrcl_config.json, the model card, the curves
and trainer_state.json, written last so that a folder holding it is complete."""

from __future__ import annotations

from pathlib import Path

from ..curves import plot_log_history
from ..errors import InputError
from ..hub import write_model_card
from ..io_utils import staged_update, write_json
from ..recipe import config_to_dict
from .build import build_embedder

CURVES_FILE = "lrcl_curves.png"


class OutputMixin:
    """`LRCLTrainer`'s output. Reads `accelerator`, `model`, `config`, `dataset`, `output_dir`, the item split,
    `history`, `global_step`, `max_steps`, `train_seconds` and `_trainable_weights`."""

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
