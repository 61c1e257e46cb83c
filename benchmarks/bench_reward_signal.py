"""The reward signal of a prepared dataset per positive rule, and how well an item table already ranks each rule's
positive among its candidates (no training).

    python benchmarks/bench_reward_signal.py --json [--data PREPARED_DIR] [--table TABLE.safetensors]
        [--backbone bundled-minilm] [--seeds 3]

Without --data the bundled Office sample is prepared into a temporary folder. Without --table the backbone's
untrained mean-pooled table is exported (the usual inference-only text embedding). Per rule (`count`, `cosine`,
`pmi`): `prepare`'s statistics (`dataset.json` -> `reward_signal`), and over the items with a positive, with the
paper's candidates (1 positive + 9 random never-co-occurring items, seeds 0..N-1): the share of items whose positive
the table ranks first, and the mean `cooc_ndcg` (random ranking 0.301, ceiling 0.5). A rule whose positives the text
table already ranks well above the floor is one the RL stage can build on. With --json the last stdout line is the
JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from reaemb_trl.data import (
    PreparedDataset,
    load_embedding_table,
    prepare_dataset,
    sample_candidates,
    sample_dataset_files,
)
from reaemb_trl.data.association import POSITIVE_RULES
from reaemb_trl.data.reward_signal import rank_reward_bounds
from reaemb_trl.embedder.loading import LoadingOptions


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="A prepared folder (default: the bundled sample, prepared here).")
    parser.add_argument("--table", help="An exported item table (default: the backbone's untrained mean pooling).")
    parser.add_argument("--backbone", default="bundled-minilm", help="Backbone of the default table.")
    parser.add_argument("--seeds", type=int, default=3, help="Candidate draws 0..N-1 (negatives and ties).")
    parser.add_argument("--json", action="store_true", help="Print the JSON as the last stdout line.")
    return parser.parse_args(argv)


def default_table(dataset: PreparedDataset, backbone: str, folder: Path) -> Path:
    from reaemb_trl.embedder import LatentReasoningEmbedder
    from reaemb_trl.export import ExportOptions, export_item_table

    embedder = LatentReasoningEmbedder.from_backbone(backbone, LoadingOptions(use_thought=False, pooling="mean"))
    return export_item_table(embedder, dataset, folder / "raw_mean.safetensors",
                             ExportOptions(show_progress=False))[0]


def ranking_of_positives(table: np.ndarray, cooc, rule: str, seeds: int) -> dict:
    """Top-1 share and mean cooc_ndcg of each item's top positive among 10 candidates, by cosine similarity."""
    unit = table / np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-12)
    first, gains = [], []
    for seed in range(seeds):
        candidates = sample_candidates(cooc, num_positives=1, num_candidates=10, seed=seed, rule=rule)
        items = np.flatnonzero(candidates.num_positives)
        scores = np.einsum("nd,nkd->nk", unit[items], unit[candidates.item_ids[items]])
        rank = (scores[:, 1:] > scores[:, :1]).sum(axis=1)  # 0-based rank of the positive (slot 0)
        first.append(float(np.mean(rank == 0)))
        gains.append(float(np.mean(1.0 / (1.0 + np.log2(rank + 2.0)))))
    return {"items": int(items.size), "positive_ranked_first": float(np.mean(first)),
            "cooc_ndcg": float(np.mean(gains)), "cooc_ndcg_per_seed": gains}


def main(argv=None) -> dict:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        data = Path(args.data) if args.data else None
        if data is None:
            inter, items = sample_dataset_files()
            data = prepare_dataset("seqjson", interactions=inter, items=items, output=Path(tmp) / "data")
        dataset = PreparedDataset.load(data)
        table_path = Path(args.table) if args.table else default_table(dataset, args.backbone, Path(tmp))
        table = load_embedding_table(table_path, num_items=dataset.num_items)[0]
        signal = dataset.metadata["reward_signal"]
        floor, ceiling = rank_reward_bounds()
        result = {"data": str(args.data or "bundled Office sample"),
                  "table": str(args.table or f"{args.backbone}, untrained, mean pooling"),
                  "cooc_ndcg_random_floor": floor, "cooc_ndcg_ceiling": ceiling, "seeds": list(range(args.seeds)),
                  "rules": {rule: {**signal["rules"][rule],
                                   **ranking_of_positives(np.asarray(table, dtype=np.float32), dataset.cooccurrence,
                                                          rule, args.seeds)}
                            for rule in POSITIVE_RULES}}
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
