"""Item-to-item association scores that pick CRRL's positives from the co-occurrence matrix.

Every rule scores the stored pairs (i, j) of the co-occurrence counts c_ij; the "mass" m_i of an item is its row sum
(all its co-occurrences), M the sum of all masses:

- `count`  c_ij: the paper's rule. On sparse data it ties often and favours hub items, which co-occur with everything.
- `cosine` c_ij / sqrt(m_i m_j): item-based collaborative filtering's frequency normalisation (Sarwar et al., WWW 2001;
  Deshpande & Karypis, TOIS 2004). Within one row it ranks by c_ij / sqrt(m_j): a hub's count is discounted.
- `pmi`    log(c_ij M / (m_i m_j)), kept when > 0 (positive PMI, as item2vec's SGNS implicitly factorises: Levy &
  Goldberg, NeurIPS 2014). Within one row it ranks by c_ij / m_j, so a single co-occurrence of two rare items scores
  highest: use it with a minimum count (the default is 2).

Within a row the three rules rank by c_ij / m_j^beta with beta = 0, 1/2, 1: one dial from raw counts to full
popularity discounting (the RP3beta idea, Paudel et al., TiiS 2017). Pairs below `min_count` are never positives.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .cooccurrence import SpilledRows, row_sums

POSITIVE_RULES = ("count", "cosine", "pmi")
# A rule's minimum count when none is given: PMI without one rewards chance pairs of rare items.
DEFAULT_MIN_COUNT = {"count": 1, "cosine": 1, "pmi": 2}


def resolve_min_count(rule: str, min_count: int | None) -> int:
    """`min_count`, or the rule's default when it is None."""
    if rule not in POSITIVE_RULES:
        raise ValueError(f"unknown positive rule {rule!r}; expected one of {POSITIVE_RULES}")
    if min_count is None:
        return DEFAULT_MIN_COUNT[rule]
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    return min_count


def item_mass(cooc: sp.spmatrix | SpilledRows) -> np.ndarray:
    """Every item's co-occurrence mass m_i (its row sum), float64."""
    return row_sums(cooc).astype(np.float64)


def association_scores(cooc: sp.spmatrix, rule: str = "count", min_count: int | None = None,
                       mass: np.ndarray | None = None, first_row: int = 0) -> sp.csr_matrix:
    """CSR float64 scores with the pattern of `cooc`'s pairs that can be positives (count >= min_count, score > 0),
    sorted indices. `cooc` may be the rows `first_row`.. of the whole matrix, whose `item_mass` is then `mass`."""
    min_count = resolve_min_count(rule, min_count)
    cooc = sp.csr_matrix(cooc)
    if not cooc.has_canonical_format:  # summed as the scores are, in float64
        cooc = sp.csr_matrix(cooc, dtype=np.float64)
        cooc.sum_duplicates()  # sorts the indices too
    if mass is None:
        mass = item_mass(cooc)
    # Scored straight from the stored counts: a float64 copy of the block would add 12 bytes per entry.
    counts = cooc.data
    if rule == "count":
        scores = counts.astype(np.float64)
    else:
        row_mass = np.repeat(mass[first_row:first_row + cooc.shape[0]], np.diff(cooc.indptr))
        if rule == "cosine":
            scores = counts / np.sqrt(row_mass * mass[cooc.indices])
        else:  # pmi
            scores = np.log(counts * mass.sum() / (row_mass * mass[cooc.indices]))
        del row_mass
    keep = (counts >= min_count) & (scores > 0)
    if keep.all():
        result = sp.csr_matrix((scores, cooc.indices, cooc.indptr), shape=cooc.shape)
    else:
        kept = np.flatnonzero(keep)
        result = sp.csr_matrix((scores[kept], cooc.indices[kept], np.searchsorted(kept, cooc.indptr)),
                               shape=cooc.shape)
    result.has_sorted_indices = True
    return result
