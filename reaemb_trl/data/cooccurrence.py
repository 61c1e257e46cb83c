"""Item co-occurrence on the users' training prefixes (validation and test items are never counted)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse as sp

# Leave-one-out: each user's last item is the test target, the one before it the validation target.
HOLDOUT = 2


def training_prefixes(sequences: Sequence[np.ndarray], holdout: int = HOLDOUT) -> tuple[np.ndarray, np.ndarray]:
    """The items of every user's training prefix, flattened, with the index of the user each came from."""
    lengths = np.fromiter((len(seq) for seq in sequences), dtype=np.int64, count=len(sequences))
    if not lengths.sum():
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    flat = np.concatenate([np.asarray(seq, dtype=np.int64) for seq in sequences])
    owner = np.repeat(np.arange(len(sequences)), lengths)
    starts = np.cumsum(lengths) - lengths
    position = np.arange(flat.size) - np.repeat(starts, lengths)
    in_prefix = position < np.repeat(np.maximum(lengths - holdout, 0), lengths)
    return flat[in_prefix], owner[in_prefix]


def training_popularity(sequences: Sequence[np.ndarray], num_items: int, holdout: int = HOLDOUT) -> np.ndarray:
    items, _ = training_prefixes(sequences, holdout)
    return np.bincount(items, minlength=num_items + 1).astype(np.int64)


def build_cooccurrence(sequences: Sequence[np.ndarray], num_items: int, window: int | None = None,
                       holdout: int = HOLDOUT) -> sp.csr_matrix:
    """Symmetric (N+1, N+1) int32 CSR of pair counts within each training prefix, zero diagonal.

    Entry (a, b) counts the position pairs holding a and b in the same prefix; with `window`, only pairs at most
    `window` positions apart.
    """
    if window is not None and window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    items, owner = training_prefixes(sequences, holdout)
    shape = (num_items + 1, num_items + 1)
    longest = int(np.bincount(owner).max()) if owner.size else 0
    if window is not None and window >= longest - 1:
        window = None  # no pair lies farther apart: the cost depends on the data, not on the window value
    if window is None:
        # users x items incidence B: B^T B counts every pair of positions in the same user.
        incidence = sp.csr_matrix((np.ones(items.size, dtype=np.int32), (owner, items)),
                                  shape=(len(sequences), num_items + 1))
        counts = (incidence.T @ incidence).tocsr()
        counts = counts - sp.diags(counts.diagonal(), format="csr", dtype=np.int32)
    else:
        left, right = [], []
        for offset in range(1, window + 1):  # a loop over offsets, each one vectorised over all pairs
            same_user = owner[:-offset] == owner[offset:]
            left.append(items[:-offset][same_user])
            right.append(items[offset:][same_user])
        left, right = np.concatenate(left), np.concatenate(right)
        rows, cols = np.concatenate([left, right]), np.concatenate([right, left])
        off_diagonal = rows != cols
        counts = sp.csr_matrix((np.ones(off_diagonal.sum(), dtype=np.int32),
                                (rows[off_diagonal], cols[off_diagonal])), shape=shape)
    counts.eliminate_zeros()
    counts.sort_indices()
    return counts.astype(np.int32)
