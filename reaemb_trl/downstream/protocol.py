"""Leave-one-out splits, the seeded sampled negatives, and the history each full ranking masks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import InputError

PROTOCOLS = ("sampled", "full")


def check_protocols(protocols: Sequence[str]) -> list[str]:
    """`protocols` in order without repeats; the one check of protocol names (config, trainer, compare)."""
    for protocol in protocols:
        if protocol not in PROTOCOLS:
            raise InputError(f"protocol {protocol!r} is unknown (choose from {', '.join(PROTOCOLS)})")
    return list(dict.fromkeys(protocols))


@dataclass(frozen=True)
class EvalSet:
    """One evaluation phase (valid or test) for the users that have one."""

    users: np.ndarray            # user indices into the dataset's sequences
    inputs: list[np.ndarray]     # the model's input sequence per user
    targets: np.ndarray          # the held-out item per user
    history: list[np.ndarray]    # items masked under the full protocol (the target is never masked)


class LeaveOneOutSplit:
    """Last item = test, second-to-last = validation, the rest = training (all next-item targets inside it).

    Users with fewer than 3 interactions have no validation/test pair: they keep `seq[:-2]` for training only,
    so no user's test or validation item ever reaches training.
    """

    def __init__(self, sequences: Sequence[np.ndarray], num_items: int):
        self.num_items = int(num_items)
        self.sequences = [np.asarray(seq, dtype=np.int64) for seq in sequences]
        for user, seq in enumerate(self.sequences):
            if seq.size and (seq.min() < 1 or seq.max() > self.num_items):
                raise InputError(f"user on line {user + 1} of the interactions: item ids must lie in "
                                 f"1..{self.num_items}, got {seq.min()}..{seq.max()}")
        self.train = [seq[:-2] for seq in self.sequences]
        self.eval_users = np.array([u for u, seq in enumerate(self.sequences) if len(seq) >= 3], dtype=np.int64)
        if self.eval_users.size == 0:
            raise InputError("no user has the 3 interactions that leave-one-out needs (train, valid, test)")
        lengths = np.array([len(seq) for seq in self.sequences], dtype=np.int64)
        self.sequence_lengths = lengths[self.eval_users]
        counted = [seq for seq in self.train if seq.size]
        self.train_popularity = np.bincount(np.concatenate(counted) if counted else np.zeros(0, np.int64),
                                            minlength=self.num_items + 1)

    def eval_set(self, phase: str) -> EvalSet:
        seqs = [self.sequences[u] for u in self.eval_users]
        if phase == "valid":
            return EvalSet(self.eval_users, [s[:-2] for s in seqs], np.array([s[-2] for s in seqs]),
                           [s[:-2] for s in seqs])
        if phase == "test":
            # At test time the validation item is history the user has already consumed, like the training
            # prefix, so it is masked too; the model also reads it as input (input = seq[:-1]).
            return EvalSet(self.eval_users, [s[:-1] for s in seqs], np.array([s[-1] for s in seqs]),
                           [s[:-1] for s in seqs])
        raise ValueError(f"phase must be 'valid' or 'test', got {phase!r}")


def sample_negatives(sequences: Sequence[np.ndarray], users: np.ndarray, num_items: int, num_negatives: int = 100,
                     seed: int = 0) -> np.ndarray:
    """[len(users), num_negatives] distinct items each user never interacted with (whole sequence).

    A function of (seed, the sequences) only, so every model compared on a dataset sees the same candidates.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, num_items, len(sequences)]))
    negatives = np.empty((len(users), num_negatives), dtype=np.int64)
    for row, user in enumerate(users):
        seen = np.unique(sequences[user])
        available = num_items - seen.size
        if available < num_negatives:
            raise InputError(f"user on line {user + 1} of the interactions: only {available} items were never "
                             "interacted with, fewer than the "
                             f"{num_negatives} sampled negatives (use --protocol full or fewer negatives)")
        if available < 2 * num_negatives:
            negatives[row] = rng.choice(np.setdiff1d(np.arange(1, num_items + 1), seen), num_negatives, replace=False)
            continue
        picked = np.zeros(0, dtype=np.int64)
        while picked.size < num_negatives:
            draws = rng.integers(1, num_items + 1, size=2 * num_negatives)
            draws = draws[~np.isin(draws, seen)]
            merged = np.concatenate([picked, draws])
            _, first = np.unique(merged, return_index=True)
            picked = merged[np.sort(first)]
        negatives[row] = picked[:num_negatives]
    return negatives
