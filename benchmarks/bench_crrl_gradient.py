"""How well one CRRL step's update estimates the reward's gradient, on a real LRCL model and dataset.

    python benchmarks/bench_crrl_gradient.py --json --lrcl outputs/quality_bundled-smollm2/lrcl \
        --data outputs/quality_bundled-smollm2/data [--items 16] [--generations 8 32] [--draws 2] [--antithetic]

For one batch of training items it computes the exact gradient, in the thought module's parameters, of the mean
noise-free training reward (the recipe's reward against the items' cached candidates: what CRRL's policy gradient
estimates, up to the smoothing of sigma), then runs one CRRL step with learning rate 0 from the same weights for each
G in --generations and each of --draws noise seeds (with --antithetic, also with mirrored noise pairs, the same
seeds), and catches the gradient the optimiser would apply. Reported: the cosine of each update with the exact ascent
direction, and between the updates of two draws (two runs that estimate one gradient agree by about the square of that
cosine). For reference, two random directions in the thought
module's parameter space have a cosine of about 1 / sqrt(parameters).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from pathlib import Path

import torch
from torch.nn.utils import parameters_to_vector
from transformers import TrainerCallback

from reaemb_trl.crrl import CRRLConfig, EmbeddingGRPOTrainer, item_dataset
from reaemb_trl.crrl.run import build_reward_model, load_policy
from reaemb_trl.pipeline import PipelineConfig

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "quality_smollm2.yaml"


class GradientCatcher(TrainerCallback):
    """The thought module's gradient as the optimiser is about to apply it."""

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.gradient = parameters_to_vector([p.grad for p in model.thought_module.parameters()]).detach().clone()


def crrl_args(recipe: PipelineConfig, lrcl: Path, data: Path, output: Path, items: int, generations: int,
              seed: int, antithetic: bool = False) -> CRRLConfig:
    """The recipe's CRRL settings for one step over `items` items x `generations` samples that leaves the weights."""
    settings = {**recipe.crrl, "lrcl_model_path": str(lrcl), "dataset_dir": str(data), "output_dir": str(output),
                "overwrite_output_dir": True, "save_strategy": "no", "report_to": "none", "disable_tqdm": True,
                "num_generations": generations, "per_device_train_batch_size": items * generations,
                "per_device_eval_batch_size": generations, "max_steps": 1, "learning_rate": 0.0, "seed": seed,
                "num_iterations": 1, "eval_strategy": "no", "logging_steps": 1, "antithetic": antithetic}
    settings.pop("save_steps", None)
    settings.pop("eval_steps", None)
    return CRRLConfig(**settings)


def exact_gradient(trainer: EmbeddingGRPOTrainer, item_ids: list[int]) -> torch.Tensor:
    """Gradient of the mean noise-free training reward of `item_ids` in the thought module's parameters, the
    candidates embedded without gradient (as CRRL's rewards see them)."""
    embedder, reward_model, args = trainer.model, trainer.reward_model, trainer.args
    reward = args.reward(args.rewards[0])
    texts = [reward_model.item_texts[i] for i in item_ids]
    embedder.zero_grad(set_to_none=True)
    prefix = embedder.encode_prefix(**embedder.tokenize(texts))
    embeddings = embedder.embed_with_thoughts(prefix, embedder.thought_mean(prefix), group_size=1)
    reward_model.clear_cache()
    scored = reward_model.score(torch.as_tensor(item_ids), embeddings,
                                lambda batch: embedder.encode(batch, show_progress=False))
    reward(scored.scores, scored.positive_weights).mean().backward()
    gradient = parameters_to_vector([p.grad for p in embedder.thought_module.parameters()]).detach().clone()
    embedder.zero_grad(set_to_none=True)
    return gradient


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def measure(recipe: PipelineConfig, lrcl: Path, data: Path, output: Path, items: int, generations: list[int],
            draws: int, mirrorings: tuple[bool, ...] = (False,)) -> dict:
    first = crrl_args(recipe, lrcl, data, output, items, generations[0], seed=0)
    reward_model = build_reward_model(first)
    train_items, _ = reward_model.split_items(first.eval_items, seed=first.seed)
    batch = [int(i) for i in train_items[:items]]
    dataset = item_dataset(batch, reward_model.item_texts)
    ascent = None
    result = {"items": items, "reward": first.rewards[0], "sigma": first.sigma, "updates": []}
    for g, antithetic in ((g, antithetic) for g in generations for antithetic in mirrorings):
        updates = []
        for draw in range(draws):
            catcher = GradientCatcher()
            args = crrl_args(recipe, lrcl, data, output, items, g, draw, antithetic)
            trainer = EmbeddingGRPOTrainer(load_policy(first), args, reward_model, dataset, callbacks=[catcher])
            if ascent is None:
                ascent = exact_gradient(trainer, batch)
                result["parameters"] = ascent.numel()
                result["random_direction_cosine"] = ascent.numel() ** -0.5
            reward_model.clear_cache()
            trainer.train()
            update = -catcher.gradient  # the loss is minimised: its negative gradient is the update direction
            updates.append(update)
            result["updates"].append({"generations": g, "antithetic": antithetic, "draw": draw,
                                      "cosine_to_exact_ascent": cosine(update, ascent)})
            print(f"[gradient] G {g}{' antithetic' if antithetic else ''} draw {draw}: cosine to the exact ascent "
                  f"{result['updates'][-1]['cosine_to_exact_ascent']:+.4f}", file=sys.stderr, flush=True)
        key = f"{g} antithetic" if antithetic else str(g)
        result.setdefault("draw_agreement", {})[key] = [cosine(updates[i], updates[j]) for i in range(draws)
                                                        for j in range(i + 1, draws)]
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lrcl", required=True, help="LRCL output folder (the policy's starting weights).")
    parser.add_argument("--data", required=True, help="The prepared folder it was trained on.")
    parser.add_argument("--recipe", default=str(RECIPE), help="Pipeline recipe whose crrl section is used.")
    # 32 items x G 64 took 13 GB resident on the decoder (one step holds every sample's pass-2 states)
    parser.add_argument("--items", type=int, default=16, help="Items in the batch.")
    parser.add_argument("--generations", type=int, nargs="+", default=[8, 32], help="G values to measure.")
    parser.add_argument("--draws", type=int, default=2, help="Noise seeds per G.")
    parser.add_argument("--antithetic", action="store_true", help="Also measure every G with mirrored noise pairs "
                        "(CRRLConfig.antithetic), with the same seeds.")
    parser.add_argument("--output", default="outputs/crrl_gradient", help="Scratch folder of the CRRL steps.")
    parser.add_argument("--json", action="store_true", help="Print the result as one JSON line.")
    args = parser.parse_args(argv)
    logging.getLogger("reaemb_trl.embedder.prompts").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(sys.stderr):  # the trainer logs to stdout; it carries the result only
        result = measure(PipelineConfig.from_yaml(args.recipe), Path(args.lrcl), Path(args.data),
                         Path(args.output), args.items, args.generations, args.draws,
                         (False, True) if args.antithetic else (False,))
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
