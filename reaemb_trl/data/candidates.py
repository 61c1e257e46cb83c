"""CRRL candidates: per item, its top co-occurring items (positives) and random never-co-occurring ones."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..errors import InputError

# Rows whose item co-occurs with at least this share of the catalogue draw their negatives exactly from the
# complement; the others draw with rejection, which then accepts at least half of the draws.
_EXACT_DRAW_SHARE = 0.5


@dataclass
class Candidates:
    """Row i (item i): positives first, by count descending, then negatives; row 0 (padding) is all zero."""

    item_ids: np.ndarray  # [N+1, K] int64
    counts: np.ndarray  # [N+1, K] float32, co-occurrence count of each candidate with the row's item (0: negative)
    num_positives: np.ndarray  # [N+1] int64


def _top_positives(cooc: sp.csr_matrix, num_positives: int, item_ids: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Fill the first slots with each row's largest counts (ties: smaller item id first); one pass per rank."""
    size = cooc.shape[0]
    degree = np.diff(cooc.indptr)
    rows = np.repeat(np.arange(size, dtype=np.int32), degree)
    remaining = cooc.data.astype(np.int64)  # a copy: taken entries are zeroed (every stored count is >= 1)
    nonempty = np.flatnonzero(degree)
    row_max = np.zeros(size, dtype=np.int64)
    for rank in range(min(num_positives, int(degree.max(initial=0)))):
        row_max[nonempty] = np.maximum.reduceat(remaining, cooc.indptr[nonempty])
        at_max = np.flatnonzero((remaining == row_max[rows]) & (remaining > 0))
        at_max_rows = rows[at_max]
        first = at_max[np.r_[True, at_max_rows[1:] != at_max_rows[:-1]]]  # indices are sorted within a row
        item_ids[rows[first], rank] = cooc.indices[first]
        counts[rows[first], rank] = remaining[first]
        remaining[first] = 0
    return np.minimum(degree, num_positives).astype(np.int64)


def _duplicate_slots(item_ids: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Flat slot indices (into item_ids) that repeat an earlier slot's item in the same row."""
    block = item_ids[rows]
    order = np.argsort(block, axis=1, kind="stable")
    ordered = np.take_along_axis(block, order, axis=1)
    repeat = np.zeros_like(block, dtype=bool)
    np.put_along_axis(repeat, order[:, 1:], ordered[:, 1:] == ordered[:, :-1], axis=1)
    row_index, slot = np.nonzero(repeat)
    return rows[row_index] * item_ids.shape[1] + slot


def sample_candidates(cooc: sp.spmatrix, num_positives: int = 1, num_candidates: int = 10, seed: int = 0,
                      epoch: int = 0) -> Candidates:
    """Candidates for every item at once; the negatives are redrawn for each (seed, epoch)."""
    if not 0 <= num_positives <= num_candidates:
        raise ValueError(f"need 0 <= num_positives <= num_candidates, got {num_positives} and {num_candidates}")
    cooc = sp.csr_matrix(cooc)
    if not cooc.has_sorted_indices:
        cooc = cooc.sorted_indices()
    size, width = cooc.shape[0], num_candidates
    num_items = size - 1
    item_ids = np.zeros((size, width), dtype=np.int64)
    counts = np.zeros((size, width), dtype=np.float32)
    positives = _top_positives(cooc, num_positives, item_ids, counts)

    degree = np.diff(cooc.indptr)
    needed = np.where(np.arange(size) > 0, width - positives, 0)
    short = np.flatnonzero(num_items - 1 - degree < needed)
    if short.size:
        item = int(short[0])
        raise InputError(f"item {item} co-occurs with {degree[item]} of the {num_items} items: too few "
                         f"never-co-occurring items for {needed[item]} negatives (lower num_candidates)")

    rng = np.random.default_rng((seed, epoch))
    exact = (np.arange(size) > 0) & (degree >= _EXACT_DRAW_SHARE * num_items)
    slot_index = np.arange(width)
    todo = np.flatnonzero(((slot_index >= positives[:, None]) & (needed[:, None] > 0) & ~exact[:, None]).ravel())
    cooc_keys = np.repeat(np.arange(size, dtype=np.int64), degree) * size + cooc.indices  # sorted: CSR order
    flat_ids = item_ids.reshape(-1)
    while todo.size:
        draws = rng.integers(1, size, size=todo.size)
        flat_ids[todo] = draws
        rows = todo // width
        keys = rows * size + draws
        hit = np.searchsorted(cooc_keys, keys)
        co_occurs = (hit < cooc_keys.size) & (cooc_keys[np.minimum(hit, cooc_keys.size - 1)] == keys)
        rejected = todo[(draws == rows) | co_occurs]
        duplicates = _duplicate_slots(item_ids, np.unique(rows))
        todo = np.union1d(rejected, duplicates)

    for item in np.flatnonzero(exact):  # the few head items: draw from the exact complement
        allowed = np.setdiff1d(np.arange(1, size), np.append(cooc.indices[cooc.indptr[item]:cooc.indptr[item + 1]],
                                                               item), assume_unique=True)
        item_ids[item, positives[item]:] = rng.choice(allowed, size=needed[item], replace=False)
    return Candidates(item_ids=item_ids, counts=counts, num_positives=np.where(np.arange(size) > 0, positives, 0))
