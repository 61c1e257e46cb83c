"""How much signal CRRL's co-occurrence reward can carry on a dataset, per positive rule, before any compute is spent.

`prepare` stores these in `dataset.json` (`reward_signal`) and prints them; the README's "Is the reward worth
training on?" section says how to read them.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .association import POSITIVE_RULES, item_mass, resolve_min_count
from .candidates import ranked_blocks
from .cooccurrence import SpilledRows

# The reference's rank gain of the positive at 0-based rank r among K candidates: 1 / (1 + log2(r + 2)).
DEFAULT_NUM_CANDIDATES = 10
HUB_MASS_SHARE = 0.01  # "hub" items: the 1% with the most co-occurrence mass


def rank_reward_bounds(num_candidates: int = DEFAULT_NUM_CANDIDATES) -> tuple[float, float]:
    """(floor, ceiling) of `cooc_ndcg` with one positive among `num_candidates`: a uniformly random ranking's mean,
    and the positive ranked first."""
    ranks = np.arange(num_candidates)
    return float(np.mean(1.0 / (1.0 + np.log2(ranks + 2.0)))), 0.5


def positive_statistics(cooc: sp.spmatrix | SpilledRows, rule: str = "count", min_count: int | None = None,
                        seed: int = 0, max_memory: int | None = None) -> dict:
    """For the single top positive of each item under `rule` (ties broken at random with `seed`): how many items
    have one, how often the top is tied or a single co-occurrence, and how much the positives pile up on hubs.
    Computed in row blocks within `max_memory` bytes (`candidates.ranked_blocks`); the result does not depend on it."""
    if not isinstance(cooc, SpilledRows):
        cooc = sp.csr_matrix(cooc)
    size = cooc.shape[0]
    item_ids = np.zeros((size, 1), dtype=np.int64)
    weights = np.zeros((size, 1), dtype=np.float32)
    has_positive, tied, counts = np.zeros(size, dtype=bool), np.zeros(size, dtype=bool), []
    blocks = ranked_blocks(cooc, 1, np.random.default_rng(seed), item_ids, weights, rule, min_count, max_memory)
    for start, block, scores, positives in blocks:
        stop = start + block.shape[0]
        has_positive[start:stop] = (positives > 0) & (np.arange(start, stop) > 0)  # row 0: padding
        rows = np.repeat(np.arange(scores.shape[0]), np.diff(scores.indptr))
        top = np.zeros(scores.shape[0])
        top[positives > 0] = np.maximum.reduceat(scores.data, scores.indptr[:-1][positives > 0])
        tied[start:stop] = np.bincount(rows[scores.data == top[rows]], minlength=scores.shape[0]) > 1
        # the raw count of each chosen pair (scipy returns a sparse matrix, not an array, for an empty selection)
        chosen = np.flatnonzero(has_positive[start:stop])
        if chosen.size:
            counts.append(np.asarray(block[chosen, item_ids[start + chosen, 0]]).reshape(-1))
    positives = item_ids[has_positive, 0]
    counts = np.concatenate(counts) if counts else np.zeros(0)
    mass = item_mass(cooc)
    num_hubs = max(1, int(np.ceil(HUB_MASS_SHARE * (size - 1))))
    hubs = np.argsort(-mass[1:], kind="stable")[:num_hubs] + 1
    return {
        "rule": rule,
        "min_count": resolve_min_count(rule, min_count),
        "items_cooccurring": int(np.count_nonzero(np.diff(cooc.indptr)[1:])),
        "items_with_positive": int(has_positive.sum()),
        "tied_top_share": _share(tied[has_positive]),
        "single_count_share": _share(counts == 1),
        "distinct_positives": int(np.unique(positives).size),
        "largest_hub": int(np.bincount(positives).max(initial=0)),
        "hub_positive_share": _share(np.isin(positives, hubs)),
    }


def _share(flags: np.ndarray) -> float:
    return float(np.mean(flags)) if flags.size else 0.0


def reward_signal(cooc: sp.spmatrix | SpilledRows, seed: int = 0, max_memory: int | None = None) -> dict:
    """`positive_statistics` for every rule, plus the rank reward's floor and ceiling with the default candidates."""
    floor, ceiling = rank_reward_bounds()
    return {"num_candidates": DEFAULT_NUM_CANDIDATES, "cooc_ndcg_random_floor": floor, "cooc_ndcg_ceiling": ceiling,
            "rules": {rule: positive_statistics(cooc, rule, seed=seed, max_memory=max_memory)
                      for rule in POSITIVE_RULES}}


def describe_reward_signal(signal: dict) -> str:
    """A few lines for a terminal: one per rule."""
    lines = [f"reward signal (cooc_ndcg among {signal['num_candidates']} candidates: random ranking "
             f"{signal['cooc_ndcg_random_floor']:.3f}, ceiling {signal['cooc_ndcg_ceiling']:.3f}):"]
    for rule, stats in signal["rules"].items():
        lines.append(f"  {rule:<7} positives for {stats['items_with_positive']:,} of {stats['items_cooccurring']:,} "
                     f"items (min count {stats['min_count']}); top tied {stats['tied_top_share']:.0%}, "
                     f"single co-occurrence {stats['single_count_share']:.0%}; {stats['distinct_positives']:,} "
                     f"distinct positives, largest hub {stats['largest_hub']}, hub positives "
                     f"{stats['hub_positive_share']:.0%}")
    return "\n".join(lines)
