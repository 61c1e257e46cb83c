"""Co-occurrence matrix + CRRL candidates on a synthetic power-law log (default: 1,000,000 interactions, 50,000 items).

Compares the vectorised build with a plain per-user pair loop (the reference's way of counting) on the same
sub-log, and reports seconds, peak traced memory and the speed ratio as JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
from collections import defaultdict

import numpy as np

from reaemb_trl.data import build_cooccurrence, sample_candidates
from reaemb_trl.io_utils import sigterm_as_interrupt


def synthetic_log(num_interactions: int, num_items: int, seed: int = 0) -> list[np.ndarray]:
    """Zipf item popularity, Pareto user lengths (>= 5), no item twice in a user; exactly `num_interactions`."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, num_items + 1)
    popularity /= popularity.sum()
    sequences, total = [], 0
    while total < num_interactions:
        lengths = np.minimum(5 + rng.pareto(1.5, size=10_000) * 5, 500).astype(np.int64)
        draws = rng.choice(np.arange(1, num_items + 1), size=int(lengths.sum()), p=popularity)
        for seq in np.split(draws, np.cumsum(lengths)[:-1]):
            seq = list(dict.fromkeys(seq.tolist()))[: num_interactions - total]
            if seq:
                sequences.append(np.array(seq, dtype=np.int64))
                total += len(seq)
    return sequences


def pair_loop_count(sequences: list[np.ndarray], holdout: int = 2) -> dict:
    counts: dict = defaultdict(int)
    for seq in sequences:
        prefix = seq[:-holdout].tolist()
        for a in prefix:
            for b in prefix:
                if a != b:
                    counts[a, b] += 1
    return counts


def measure(fn):
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, seconds, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--baseline-interactions", type=int, default=100_000,
                        help="size of the sub-log both methods count, for the speed ratio")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    sequences = synthetic_log(args.interactions, args.items)
    matrix, matrix_s, matrix_mb = measure(lambda: build_cooccurrence(sequences, args.items))
    _, candidates_s, candidates_mb = measure(lambda: sample_candidates(matrix, num_positives=1, num_candidates=10))

    subset, total = [], 0
    for seq in sequences:
        if total >= args.baseline_interactions:
            break
        subset.append(seq)
        total += len(seq)
    vectorised = measure(lambda: build_cooccurrence(subset, args.items))
    start = time.perf_counter()
    loop_counts = pair_loop_count(subset)
    loop_s = time.perf_counter() - start
    assert len(loop_counts) == vectorised[0].nnz and sum(loop_counts.values()) == vectorised[0].sum()

    result = {
        "interactions": int(sum(map(len, sequences))), "users": len(sequences), "items": args.items,
        "nonzeros": int(matrix.nnz),
        "matrix_seconds": round(matrix_s, 3), "matrix_peak_mib": round(matrix_mb, 1),
        "candidates_seconds": round(candidates_s, 3), "candidates_peak_mib": round(candidates_mb, 1),
        "total_seconds": round(matrix_s + candidates_s, 3),
        "baseline": {"interactions": total, "pair_loop_seconds": round(loop_s, 3),
                     "vectorised_seconds": round(vectorised[1], 4),
                     "speedup": round(loop_s / vectorised[1], 1)},
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    with sigterm_as_interrupt():  # a scheduler's SIGTERM unwinds like Ctrl-C: temporary folders go
        main()
