"""CRRL as a library call: `run(CRRLConfig(...))` trains from an LRCL folder and saves the embedder folder;
`build_trainer` and `load_policy` are its parts (the CLI and the pipeline call `run`)."""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import TrainerCallback
from transformers.integrations import TensorBoardCallback
from transformers.integrations.integration_utils import default_logdir

from ..curves import plot_log_history
from ..errors import InputError
from ..io_utils import OutputGuard, write_json
from ..launch import StopRequests
from ..training_state import CHECKPOINT_MARKER, resolve_resume
from .crrl_config import CRRLConfig

logger = logging.getLogger(__name__)
# An output folder holds a CRRL run once it has a checkpoint or the finished model.
RUN_MARKERS = (CHECKPOINT_MARKER, f"checkpoint-*/{CHECKPOINT_MARKER}", "crrl_config.json")
CURVES_FILE = "crrl_curves.png"
# Warn when the starting reward covers less than this share of the floor-to-ceiling gap.
LOW_START_SHARE = 0.2


def _same_backbone(expected: str, recorded: str | None) -> bool:
    if recorded is None:
        return False
    if Path(expected).is_dir() and Path(recorded).is_dir():
        return Path(expected).resolve() == Path(recorded).resolve()
    return expected == recorded


def load_policy(args: CRRLConfig):
    """The LRCL embedder named by `args.lrcl_model_path`, checked against `args.backbone` before loading, with
    `args.loading_options()` (revision, dtype)."""
    from ..embedder import LatentReasoningEmbedder
    from ..embedder.backbone import torch_dtype
    from ..embedder.serialization import embedder_folder, read_config, require_files

    if not args.lrcl_model_path:
        raise InputError("CRRL: lrcl_model_path (the LRCL output folder) is required")
    options = args.loading_options()
    folder = embedder_folder(args.lrcl_model_path, options.model_revision)
    require_files(folder)
    recorded = read_config(folder).backbone_name_or_path
    if args.backbone is not None and not _same_backbone(args.backbone, recorded):
        raise InputError(f"{folder / 'config.json'}: the LRCL model was built on backbone {recorded!r}, "
                         f"but the recipe says backbone={args.backbone!r}")
    embedder = LatentReasoningEmbedder.from_pretrained(folder, is_trainable=args.train_lora,
                                                       dtype=torch_dtype(options.dtype))
    embedder.config.similarity = args.similarity  # CRRL trains for its reward's similarity, saved with the model
    if args.max_length is not None:
        embedder.set_max_length(args.max_length)
    return embedder


def build_reward_model(args: CRRLConfig):
    """The recipe's `CooccurrenceRewardModel` over `args.dataset_dir` (candidates as the recipe says)."""
    from .reward_model import CooccurrenceRewardModel

    if not args.dataset_dir:
        raise InputError("CRRL: dataset_dir (a prepared dataset folder) is required")
    return CooccurrenceRewardModel(
        args.dataset_dir, num_positives=args.num_positives, num_candidates=args.num_candidates,
        similarity=args.similarity, refresh_every=args.refresh_every, seed=args.seed,
        positive_rule=args.positive_rule, positive_min_count=args.positive_min_count,
        num_hard_negatives=args.num_hard_negatives,
    )


def build_trainer(args: CRRLConfig):
    """The trainer of a recipe: reward model over `args.dataset_dir`, items split into train / held-out (eval)."""
    from .crrl_trainer import EmbeddingGRPOTrainer, item_dataset

    reward_model = build_reward_model(args)
    train_items, heldout_items = reward_model.split_items(args.eval_items, seed=args.seed)
    embedder = load_policy(args)
    return EmbeddingGRPOTrainer(
        embedder, args, reward_model,
        train_dataset=item_dataset(train_items, reward_model.item_texts),
        eval_dataset=item_dataset(heldout_items, reward_model.item_texts) if len(heldout_items) else None,
    )


def _log_into_output_dir(trainer) -> None:
    """The evaluation before training logs before `on_train_begin`, where TensorBoard's callback picks its folder, so
    it would write to ./runs of the working directory: give it the folder it picks at train begin."""
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback) and callback.logging_dir is None:
            callback.logging_dir = str(Path(trainer.args.output_dir) / default_logdir())


def _reward_headroom(trainer, start: float) -> dict:
    """The held-out reward's random-ranking floor and ceiling next to the starting table's reward, logged; a warning
    when the start is so close to the floor that the reward barely tells this table from a random one."""
    args = trainer.args
    floor, ceiling = trainer.reward_model.reward_bounds(trainer.eval_dataset["item_id"], args.reward(args.eval_reward),
                                                        seed=args.seed)
    headroom = (start - floor) / (ceiling - floor) if ceiling > floor else float("nan")
    trainer.log({"reward_floor": floor, "reward_ceiling": ceiling, "start_above_floor": headroom})
    if headroom < LOW_START_SHARE:
        logger.warning("CRRL: the starting table's held-out %s is %.4f, within %.0f%% of the gap between a random "
                       "ranking (%.4f) and a perfect one (%.4f): the reward carries little signal for this table. "
                       "Check the reward signal that `prepare` printed and consider positive_rule=cosine or pmi.",
                       args.eval_reward, start, 100 * headroom, floor, ceiling)
    return {"reward_floor": floor, "reward_ceiling": ceiling, "start_above_floor": headroom}


def plot_curves(log_history: list[dict], eval_reward: str, path: Path, metrics: dict) -> bool:
    """Reward (sampled and noise-free, training batches), the held-out (`eval_...`) and training-item
    (`eval_train_items_...`) noise-free rewards at each evaluation from step 0, and the clipped share of ratios,
    against the step; the reward's floor and ceiling as dashed lines."""
    bounds = {label: metrics[key] for label, key in (("random ranking", "reward_floor"),
                                                     ("perfect ranking", "reward_ceiling")) if key in metrics}
    panels = {
        "training reward (batches)": ["reward", "reward_noise_free"],
        f"noise-free {eval_reward}": [f"eval_{eval_reward}", f"eval_train_items_{eval_reward}"],
        "clipped ratios": ["clip_ratio/region_mean"],
    }
    # the evaluation before training is logged before the Trainer's state (and its log history) starts: step 0
    start = [{"step": 0, **{key.replace("eval_start_", "eval_"): value for key, value in metrics["start"].items()}}
             ] if "start" in metrics else []
    return plot_log_history(start + log_history, panels, path, {f"noise-free {eval_reward}": bounds})


class _StopAfterStep(TrainerCallback):
    """Turns a recorded SIGTERM / SIGINT into a checkpoint at the end of the running step and a stop."""

    def __init__(self, stop: StopRequests):
        self.stop = stop

    def on_step_end(self, args, state, control, **kwargs):
        if self.stop.requested:
            control.should_save = True
            control.should_training_stop = True
        return control


def run(args: CRRLConfig) -> dict:
    """Train, evaluate before and after on the held-out items, save the embedder folder; returns the metrics."""
    output = Path(args.output_dir)
    model = args.lrcl_model_path
    guard = OutputGuard(  # before any work; held while training: the lock, and a replaced run deleted only then
        output, kind="run", marker=RUN_MARKERS, flag="--overwrite_output_dir true",
        inputs=[args.dataset_dir, model if model and Path(model).exists() else None],
        overwrite=args.overwrite_output_dir, resume=bool(args.resume_from_checkpoint))
    trainer = build_trainer(args)
    with guard:
        trainer.accelerator.wait_for_everyone()  # the main process made the folder
        return _train(args, trainer, output)


def _train(args: CRRLConfig, trainer, output: Path) -> dict:
    reward_model = trainer.reward_model
    heldout = trainer.eval_dataset is not None
    metrics = {"train_items": len(trainer.train_dataset),
               "heldout_items": len(trainer.eval_dataset) if heldout else 0,
               "skipped_items": reward_model.num_items - len(reward_model.items_with_positives())}
    _log_into_output_dir(trainer)
    if heldout:
        metrics["start"] = trainer.evaluate(metric_key_prefix="eval_start")
        metrics.update(_reward_headroom(trainer, metrics["start"][f"eval_start_{args.eval_reward}"]))
    with StopRequests() as stop:  # SIGTERM / SIGINT: checkpoint after the running step, then stop
        trainer.add_callback(_StopAfterStep(stop))
        trainer.train(resume_from_checkpoint=resolve_resume(args.resume_from_checkpoint, output))
    if stop.requested:
        raise KeyboardInterrupt(f"{stop.requested}: CRRL stopped after step {trainer.state.global_step} and saved its "
                                "checkpoint; resume with --resume_from_checkpoint latest")
    if heldout:
        metrics["end"] = trainer.evaluate()
    trainer.save_model(args.output_dir)
    if trainer.accelerator.is_main_process:
        trainer.save_state()
        write_json(output / "crrl_config.json", args.to_dict())
        write_json(output / "crrl_metrics.json", metrics)
        plot_curves(trainer.state.log_history, args.eval_reward, output / CURVES_FILE, metrics)
        trainer.create_model_card(start_metrics={key.replace("eval_start_", "eval_"): value
                                                 for key, value in metrics.get("start", {}).items()})
    # a process group left to interpreter exit can abort a gloo rank ("terminate called without an active exception")
    trainer.accelerator.end_training()
    return metrics
