"""Pass-1 results kept per prompt, for a frozen backbone.

While the backbone (LoRA merged or absent) does not train, a prompt's pass 1 never changes: its prefix states, KV
cache and masks can be kept and reused, and encoding the prompt again costs only the thought module and pass 2. CRRL
trains the thought module alone, so its candidate and held-out embeddings stay exact with this cache.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from ..errors import InputError


class PrefixCache:
    """Least-recently-used store of single-row, unpadded `PrefixState`s (see `prefix_state.split_prefix`).

    Entries stay on the model's device. Per prompt of T tokens a decoder entry holds its KV cache
    (2 x layers x kv_heads x head_dim x T values) and T final states; an encoder entry holds T final states.
    """

    def __init__(self, max_prompts: int):
        if max_prompts < 1:
            raise InputError(f"PrefixCache: max_prompts must be >= 1, got {max_prompts}")
        self.max_prompts = max_prompts
        self._rows: OrderedDict[Hashable, object] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._rows

    def get(self, key: Hashable):
        """The stored row of `key` (marked as recently used), or None; counts a hit or a miss."""
        row = self._rows.get(key)
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        self._rows.move_to_end(key)
        return row

    def put(self, key: Hashable, row) -> None:
        self._rows[key] = row
        self._rows.move_to_end(key)
        while len(self._rows) > self.max_prompts:
            self._rows.popitem(last=False)
