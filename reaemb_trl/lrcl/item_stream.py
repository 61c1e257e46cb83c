"""The items LRCL sees: a seeded held-out split of the items with text, the training stream (epoch after epoch, each
a seeded permutation) cut into per-process micro-batches, and the two attribute-dropout views of each item: all a
function of (seed, position in the stream), so a resumed run sees what the straight run saw.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .views import ViewSampler

# Stream namespaces of the view sampler and of the item order, so they never share random numbers.
_TRAIN_VIEWS, _EVAL_VIEWS, _ITEM_ORDER, _EVAL_SPLIT = 1, 2, 3, 4


class ItemStreamMixin:
    """`LRCLTrainer`'s items. Reads `dataset`, `config` and `accelerator` (process index and count); `_split_items`
    sets `train_item_ids`, `eval_item_ids`, `train_views` and `eval_views`."""

    def _split_items(self) -> None:
        ds, config = self.dataset, self.config
        where = getattr(ds, "path", config.dataset_dir)
        if not ds.has_text:
            raise InputError(f"{where}: the dataset has no item text, and LRCL needs item text to build views")
        attributes = [[]] + [ds.item_attributes(i) for i in range(1, ds.num_items + 1)]
        with_text = np.array([i for i in range(1, ds.num_items + 1) if attributes[i]], dtype=np.int64)
        num_eval = min(config.eval_items, len(with_text) // 2)
        if len(with_text) - num_eval < 2:
            raise InputError(f"{where}: {len(with_text)} items have text; with {num_eval} held out for evaluation, "
                             f"{len(with_text) - num_eval} remain and LRCL needs at least 2 to train on "
                             "(lower eval_items or add item text)")
        order = np.random.default_rng([config.seed, _EVAL_SPLIT]).permutation(with_text)
        self.eval_item_ids = np.sort(order[:num_eval])
        self.train_item_ids = np.sort(order[num_eval:])
        self.train_views = ViewSampler(attributes, config.view_drop_ratio, config.seed, _TRAIN_VIEWS)
        self.eval_views = ViewSampler(attributes, config.view_drop_ratio, config.seed, _EVAL_VIEWS)
        self._epoch_orders: dict[int, np.ndarray] = {}

    def stream_items(self, positions: np.ndarray) -> np.ndarray:
        """Item at each position of the training stream: epoch after epoch, each a seeded permutation."""
        num_train = len(self.train_item_ids)
        epochs, offsets = np.divmod(np.asarray(positions, dtype=np.int64), num_train)
        items = np.empty_like(epochs)
        for epoch in np.unique(epochs):
            if epoch not in self._epoch_orders:
                self._epoch_orders = {e: o for e, o in self._epoch_orders.items() if e >= epoch - 1}
                rng = np.random.default_rng([self.config.seed, _ITEM_ORDER, int(epoch)])
                self._epoch_orders[epoch] = rng.permutation(self.train_item_ids)
            mask = epochs == epoch
            items[mask] = self._epoch_orders[epoch][offsets[mask]]
        return items

    def micro_batch_positions(self, micro_step: int) -> np.ndarray:
        """This process's share of the stream positions of one micro-step (the global micro-batch is contiguous)."""
        per_device = self.config.per_device_train_batch_size
        start = (micro_step * self.accelerator.num_processes + self.accelerator.process_index) * per_device
        return np.arange(start, start + per_device)

    def view_texts(self, positions: np.ndarray) -> tuple[list[str], list[str]]:
        return self.train_views.pairs(self.stream_items(positions), positions)
