"""Two random views of an item's text: its attributes shuffled and a share of them dropped, independently twice."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..data import join_attributes

Attributes = Sequence[tuple[str, str]]


def attribute_view(attributes: Attributes, drop_ratio: float, rng: np.random.Generator) -> list[tuple[str, str]]:
    """The attributes in a random order with `int(drop_ratio * k)` of them left out."""
    keep = len(attributes) - int(drop_ratio * len(attributes))
    order = rng.permutation(len(attributes))[:keep]
    return [attributes[i] for i in order]


def word_dropout(text: str, drop_ratio: float, rng: np.random.Generator) -> str:
    """The text with `int(drop_ratio * n)` of its n words left out (at least one when there are two or more)."""
    words = text.split()
    if len(words) < 2:
        return text
    num_dropped = max(1, int(drop_ratio * len(words)))
    dropped = set(rng.choice(len(words), size=num_dropped, replace=False).tolist())
    return " ".join(word for i, word in enumerate(words) if i not in dropped)


def make_views(attributes: Attributes, drop_ratio: float, rng: np.random.Generator,
               max_tries: int = 8) -> tuple[str, str]:
    """Two view texts that differ whenever the item allows it.

    Equal views are redrawn up to `max_tries` times; an item whose attributes cannot give two different views
    (a single attribute) gets word-level dropout of its text instead.
    """
    for _ in range(max_tries if len(attributes) > 1 else 0):
        first = join_attributes(attribute_view(attributes, drop_ratio, rng))
        second = join_attributes(attribute_view(attributes, drop_ratio, rng))
        if first != second:
            return first, second
    text = join_attributes(attributes)
    first = second = text
    for _ in range(max_tries):
        first, second = word_dropout(text, drop_ratio, rng), word_dropout(text, drop_ratio, rng)
        if first != second:
            break
    return first, second


class ViewSampler:
    """Views keyed by an integer (a position in the training stream, or an item id for evaluation).

    Each pair is drawn from its own generator seeded with (seed, namespace, key), so any step's views can be
    rebuilt without replaying a running random state: this is what makes resuming exact.
    """

    def __init__(self, item_attributes: Sequence[Attributes], drop_ratio: float = 0.4, seed: int = 0,
                 namespace: int = 0):
        self.item_attributes = item_attributes
        self.drop_ratio = drop_ratio
        self.seed = seed
        self.namespace = namespace

    def pair(self, item_id: int, key: int) -> tuple[str, str]:
        rng = np.random.default_rng([self.seed, self.namespace, key])
        return make_views(self.item_attributes[item_id], self.drop_ratio, rng)

    def pairs(self, item_ids: Sequence[int], keys: Sequence[int]) -> tuple[list[str], list[str]]:
        views = [self.pair(int(item), int(key)) for item, key in zip(item_ids, keys)]
        return [first for first, _ in views], [second for _, second in views]
