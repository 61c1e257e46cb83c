"""Training objectives of the downstream recommenders, one per file."""

from .masked_item_ce import masked_item_ce
from .next_item_bce import next_item_bce

__all__ = ["masked_item_ce", "next_item_bce"]
