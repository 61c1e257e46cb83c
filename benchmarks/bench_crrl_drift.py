"""Where CRRL moves the thought module, against the supervised control trained on the same positives and negatives.

    python benchmarks/bench_crrl_drift.py --json --run outputs/quality_bundled-smollm2 \
        [--others outputs/rewards_bundled-smollm2/pmi outputs/rewards_bundled-smollm2/pmi_g64 ...]

Reads a finished `bench_quality.py` output folder (its `lrcl`, `crrl` with its checkpoints, and `cooc_sft` embedder
folders) and reports, for CRRL's final weights and every checkpoint: the distance the thought module moved from the
LRCL start (relative to the start's norm), and the cosine between that move and the supervised arm's move. A move
driven by the reward's gradient points, at least in part, where the exact gradient of the same objective (the
`cooc_sft` arm) points; a random walk grows like the square root of the steps and is orthogonal to it.
`--others`: more CRRL folders trained from the same LRCL folder (the reward study's variants), each with its move,
its cosine to the supervised move, and the cosine between every two of them: runs that follow one gradient agree.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

WEIGHTS = "thought_module.safetensors"


def flat(folder: Path) -> np.ndarray:
    tensors = load_file(str(folder / WEIGHTS))
    return np.concatenate([tensors[name].astype(np.float64).ravel() for name in sorted(tensors)])


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def drift(run: Path, others: list[Path] = ()) -> dict:
    start = flat(run / "lrcl")
    supervised = flat(run / "cooc_sft") - start
    checkpoints = sorted(run.glob("crrl/checkpoint-*"), key=lambda path: int(path.name.rsplit("-", 1)[1]))
    moves = {int(path.name.rsplit("-", 1)[1]): flat(path) - start for path in checkpoints}
    final = flat(run / "crrl") - start
    other_moves = {str(folder): flat(folder) - start for folder in others}
    return {
        "run": str(run),
        "start_norm": float(np.linalg.norm(start)),
        "cooc_sft_move": float(np.linalg.norm(supervised)),
        "crrl_move": float(np.linalg.norm(final)),
        "crrl_cosine_to_cooc_sft": cosine(final, supervised),
        "crrl_checkpoints": [{"step": step, "move": float(np.linalg.norm(move)),
                              "cosine_to_cooc_sft": cosine(move, supervised)} for step, move in moves.items()],
        "others": [{"folder": name, "move": float(np.linalg.norm(move)), "cosine_to_cooc_sft": cosine(move, supervised)}
                   for name, move in other_moves.items()],
        "pairwise_cosines": [{"a": a, "b": b, "cosine": cosine(other_moves[a], other_moves[b])}
                             for i, a in enumerate(other_moves) for b in list(other_moves)[i + 1:]],
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="outputs/quality_bundled-smollm2", help="A bench_quality.py output folder.")
    parser.add_argument("--others", nargs="*", default=[], help="More CRRL folders trained from the run's LRCL folder.")
    parser.add_argument("--json", action="store_true", help="Print the result as one JSON line.")
    args = parser.parse_args(argv)
    result = drift(Path(args.run), [Path(folder) for folder in args.others])
    if args.json:
        print(json.dumps(result))
    else:
        print(f"CRRL moved {result['crrl_move']:.3f} (cooc_sft {result['cooc_sft_move']:.3f}, start norm "
              f"{result['start_norm']:.3f}); cosine to cooc_sft's move {result['crrl_cosine_to_cooc_sft']:.3f}")
        for row in result["crrl_checkpoints"]:
            print(f"  step {row['step']:>3}: move {row['move']:.3f}, cosine {row['cosine_to_cooc_sft']:.3f}")
        for row in result["others"]:
            print(f"{row['folder']}: move {row['move']:.3f}, cosine to cooc_sft {row['cosine_to_cooc_sft']:.3f}")
        for row in result["pairwise_cosines"]:
            print(f"cosine({row['a']}, {row['b']}) = {row['cosine']:.3f}")
    return result


if __name__ == "__main__":
    main()
