"""Downstream evaluation speed on the bundled sample: batched full ranking vs a per-user loop, and one SASRec epoch.

Prints measured JSON with --json. The per-user loop is the plain oracle: both must give the same metrics.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from reaemb_trl.data import PreparedDataset, prepare_dataset, sample_dataset_files
from reaemb_trl.downstream import DownstreamConfig, DownstreamTrainer
from reaemb_trl.downstream.metrics import rank_counts, ranking_metrics
from reaemb_trl.io_utils import sigterm_as_interrupt


@torch.no_grad()
def per_user_full_ranking(trainer: DownstreamTrainer, phase: str) -> dict[str, np.ndarray]:
    """One user at a time, straight from the split (no padding, no batching)."""
    trainer.model.eval()
    data = trainer.split.eval_set(phase)
    context = trainer.model.context_length
    greater, ties = [], []
    for inputs, target, history in zip(data.inputs, data.targets, data.history):
        window = torch.from_numpy(inputs[-context:]).unsqueeze(0)
        scores = trainer.model.score_all(window, torch.tensor([window.shape[1]]))[0].clone()
        target_score = scores[target].clone()
        scores[0] = float("-inf")
        scores[torch.from_numpy(history)] = float("-inf")
        scores[target] = target_score
        g, t = rank_counts(scores.unsqueeze(0), target_score.unsqueeze(0))
        greater.append(g)
        ties.append(t)
    return ranking_metrics(np.concatenate(greater), np.concatenate(ties))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    parser.add_argument("--max-items", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        inter, items = sample_dataset_files()
        folder = prepare_dataset("seqjson", interactions=inter, items=items, output=Path(tmp) / "office",
                                 show_progress=False)
        dataset = PreparedDataset.load(folder)
    config = DownstreamConfig(recommender="sasrec", protocol="full", max_items=args.max_items, epochs=1,
                              show_progress=False)
    trainer = DownstreamTrainer(config, dataset.sequences, dataset.num_items)

    start = time.perf_counter()
    trainer.train()
    epoch_s = time.perf_counter() - start
    start = time.perf_counter()
    batched = trainer.rank_metrics("test")
    batched_s = time.perf_counter() - start
    start = time.perf_counter()
    looped = per_user_full_ranking(trainer, "test")
    looped_s = time.perf_counter() - start

    # The batched path sorts users by length; compare the order-free means.
    same = all(np.isclose(batched[k].mean(), looped[k].mean(), atol=1e-6) for k in batched)
    result = {
        "dataset": "office-2014 sample", "users": dataset.num_users, "items": dataset.num_items,
        "max_items": args.max_items, "torch_threads": torch.get_num_threads(),
        "sasrec_epoch_with_validation_s": round(epoch_s, 3),
        "full_ranking_batched_s": round(batched_s, 3), "full_ranking_per_user_s": round(looped_s, 3),
        "speedup_batched_vs_per_user": round(looped_s / batched_s, 2), "same_metrics": bool(same),
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    with sigterm_as_interrupt():  # a scheduler's SIGTERM unwinds like Ctrl-C: temporary folders go
        main()
