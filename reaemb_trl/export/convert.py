"""A table in another format without encoding again: any table `read_item_table` reads (an export's, or another
tool's lined up with the dataset) is written in any export format, with the dataset's source ids."""

from __future__ import annotations

import os
from pathlib import Path

from ..data import PreparedDataset
from ..data.embedding_table import read_item_table
from .export import output_guards
from .formats import check_output, write_table

# Keys the written table sets itself: its layout, and how to compare its rows (kept apart as `usage`).
_LAYOUT_KEYS = ("format", "padding_row")
_USAGE_KEYS = ("similarity", "normalized")


def convert_table(table: str | os.PathLike, data: str | os.PathLike, output: str | os.PathLike,
                  table_format: str = "safetensors", overwrite: bool = False) -> Path:
    """Write the table file `table`, checked against the prepared dataset `data` (ids, row count, fingerprint),
    as `output` in `table_format`. Its metadata (model, similarity, ...) is carried over, with `converted_from`;
    a PCA table's parameters are not (only its rows). Returns the written table's path."""
    check_output(table_format, output, None)
    guard = output_guards([output], table_format, None, [table, data], overwrite)[0]
    dataset = PreparedDataset.load(data)
    check_output(table_format, output, None, dataset.source_ids)
    rows, described = read_item_table(table, dataset.source_ids, dataset.sha256)
    metadata = {key: value for key, value in described.items() if key not in (*_LAYOUT_KEYS, *_USAGE_KEYS)}
    metadata.update(dim=rows.shape[1], num_items=dataset.num_items, dataset_sha256=dataset.sha256,
                    converted_from=str(table))
    usage = {key: described.get(key, "unknown") for key in _USAGE_KEYS}
    with guard:
        return write_table(table_format, guard.path, rows, dataset.source_ids, metadata, usage)
