"""CRRL candidates: per item, its best-associated items (positives, by a rule of `association`) and random
never-co-occurring ones (negatives)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import scipy.sparse as sp

from ..errors import InputError
from .association import association_scores, item_mass
from .cooccurrence import SpilledRows, block_entries, stored_row_blocks

# Rows whose item co-occurs with at least this share of the catalogue draw their negatives exactly from the
# complement; the others draw with rejection, which then accepts at least half of the draws.
_EXACT_DRAW_SHARE = 0.5
# Bytes per stored entry while a row block is read back, scored and ranked: its counts and indices, the scores, the
# random tie-breakers, the segment maxima and masks. About 35 are measured (tracemalloc, one block of 42M entries);
# the rest is headroom for the allocator.
SCORE_BYTES_PER_ENTRY = 96


@dataclass
class Candidates:
    """Row i (item i): positives first, by score descending, then negatives; row 0 (padding) is all zero."""

    item_ids: np.ndarray  # [N+1, K] int64
    weights: np.ndarray  # [N+1, K] float32: the positive rule's score with the row's item (0: a negative)
    num_positives: np.ndarray  # [N+1] int64


def top_positives(scores: sp.csr_matrix, num_positives: int, rng: np.random.Generator, item_ids: np.ndarray,
                   weights: np.ndarray) -> np.ndarray:
    """Fill the first slots of each row with its highest-scoring items; equal scores are ordered at random (an
    item id says nothing about an item, so it must not break ties).

    The order is that of sorting each row by score descending, then by a uniform draw per stored entry, then by
    position. Rather than that sort (three passes over every entry, most of `prepare`'s time at catalogue scale),
    each slot takes every row's best remaining entry with segment reductions: a few linear passes per slot."""
    tiebreak = rng.random(scores.nnz)
    lengths = np.diff(scores.indptr)
    nonempty = np.flatnonzero(lengths)
    starts, lengths = scores.indptr[nonempty], lengths[nonempty]
    values = scores.data
    slots = min(num_positives, int(lengths.max(initial=0)))
    for slot in range(slots):
        best = _segment_best(values, tiebreak, starts, lengths)
        filled = values[best] > -np.inf  # a row with fewer entries than slots has run out
        rows, best = nonempty[filled], best[filled]
        item_ids[rows, slot] = scores.indices[best]
        weights[rows, slot] = scores.data[best]
        if slot + 1 < slots:  # the next slot looks past the entries taken
            values = values.copy() if values is scores.data else values
            values[best] = -np.inf
    return np.minimum(np.diff(scores.indptr), num_positives).astype(np.int64)


def _segment_best(values: np.ndarray, tiebreak: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """For each segment [starts[k], starts[k] + lengths[k]) (non-empty, consecutive, covering `values`), the position
    of its largest value; ties go to the smallest `tiebreak`, then to the first."""
    best = values == np.repeat(np.maximum.reduceat(values, starts), lengths)
    best &= tiebreak == np.repeat(np.minimum.reduceat(np.where(best, tiebreak, np.inf), starts), lengths)
    winners = np.flatnonzero(best)
    segment = np.searchsorted(starts, winners, side="right")
    return winners[np.r_[True, segment[1:] != segment[:-1]]]


def ranked_blocks(cooc: sp.csr_matrix | SpilledRows, num_positives: int, rng: np.random.Generator,
                  item_ids: np.ndarray, weights: np.ndarray, rule: str = "count", min_count: int | None = None,
                  max_memory: int | None = None) -> Iterator[tuple[int, sp.csr_matrix, sp.csr_matrix, np.ndarray]]:
    """`top_positives` of the rule's scores row block by row block within `max_memory` bytes, yielding (first row,
    counts, scores, positives per row) of each block. The tie-breakers are drawn block after block in row order:
    the same numbers as for the whole matrix at once, so the same result."""
    mass = item_mass(cooc)
    for start, block in stored_row_blocks(cooc, block_entries(max_memory, SCORE_BYTES_PER_ENTRY, cooc.shape[1])):
        stop = start + block.shape[0]
        scores = association_scores(block, rule, min_count, mass, start)
        yield start, block, scores, top_positives(scores, num_positives, rng, item_ids[start:stop],
                                                  weights[start:stop])


def _duplicate_slots(item_ids: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Flat slot indices (into item_ids) that repeat an earlier slot's item in the same row."""
    block = item_ids[rows]
    order = np.argsort(block, axis=1, kind="stable")
    ordered = np.take_along_axis(block, order, axis=1)
    repeat = np.zeros_like(block, dtype=bool)
    np.put_along_axis(repeat, order[:, 1:], ordered[:, 1:] == ordered[:, :-1], axis=1)
    row_index, slot = np.nonzero(repeat)
    return rows[row_index] * item_ids.shape[1] + slot


def _stored(cooc: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Whether each (row, col) is a stored entry of `cooc` (sorted indices): one binary search per query, all
    queries at once, with no temporaries per stored entry."""
    if not cooc.nnz:
        return np.zeros(rows.size, dtype=bool)
    last = cooc.indices.size - 1
    lo, end = cooc.indptr[rows].astype(np.int64), cooc.indptr[rows + 1].astype(np.int64)
    hi = end.copy()
    while (active := lo < hi).any():
        mid = (lo + hi) // 2
        below = active & (cooc.indices[np.minimum(mid, last)] < cols)
        lo = np.where(below, mid + 1, lo)
        hi = np.where(active & ~below, mid, hi)
    return (lo < end) & (cooc.indices[np.minimum(lo, last)] == cols)


def sample_candidates(cooc: sp.spmatrix, num_positives: int = 1, num_candidates: int = 10, seed: int = 0,
                      epoch: int = 0, rule: str = "count", min_count: int | None = None,
                      max_memory: int | None = None) -> Candidates:
    """Candidates for every item at once: positives by `rule` (`association.POSITIVE_RULES`, pairs counted at least
    `min_count` times); ties among positives and the negatives are redrawn for each (seed, epoch). The positives are
    ranked in row blocks within `max_memory` bytes (default: `cooccurrence.default_max_memory()`); the result does
    not depend on it."""
    if not 0 <= num_positives <= num_candidates:
        raise ValueError(f"need 0 <= num_positives <= num_candidates, got {num_positives} and {num_candidates}")
    cooc = sp.csr_matrix(cooc)
    if not cooc.has_sorted_indices:
        cooc = cooc.sorted_indices()
    size, width = cooc.shape[0], num_candidates
    num_items = size - 1
    item_ids = np.zeros((size, width), dtype=np.int64)
    weights = np.zeros((size, width), dtype=np.float32)
    rng = np.random.default_rng((seed, epoch))
    positives = np.concatenate([np.zeros(0, dtype=np.int64)] + [
        block_positives for *_, block_positives in ranked_blocks(cooc, num_positives, rng, item_ids, weights, rule,
                                                                  min_count, max_memory)])

    degree = np.diff(cooc.indptr)
    needed = np.where(np.arange(size) > 0, width - positives, 0)
    short = np.flatnonzero(num_items - 1 - degree < needed)
    if short.size:
        item = int(short[0])
        raise InputError(f"item {item} co-occurs with {degree[item]} of the {num_items} items: too few "
                         f"never-co-occurring items for {needed[item]} negatives (lower num_candidates)")

    exact = (np.arange(size) > 0) & (degree >= _EXACT_DRAW_SHARE * num_items)
    slot_index = np.arange(width)
    todo = np.flatnonzero(((slot_index >= positives[:, None]) & (needed[:, None] > 0) & ~exact[:, None]).ravel())
    flat_ids = item_ids.reshape(-1)
    while todo.size:
        draws = rng.integers(1, size, size=todo.size)
        flat_ids[todo] = draws
        rows = todo // width
        rejected = todo[(draws == rows) | _stored(cooc, rows, draws)]
        duplicates = _duplicate_slots(item_ids, np.unique(rows))
        todo = np.union1d(rejected, duplicates)

    for item in np.flatnonzero(exact):  # the few head items: draw from the exact complement
        allowed = np.setdiff1d(np.arange(1, size), np.append(cooc.indices[cooc.indptr[item]:cooc.indptr[item + 1]],
                                                               item), assume_unique=True)
        item_ids[item, positives[item]:] = rng.choice(allowed, size=needed[item], replace=False)
    return Candidates(item_ids=item_ids, weights=weights, num_positives=np.where(np.arange(size) > 0, positives, 0))
