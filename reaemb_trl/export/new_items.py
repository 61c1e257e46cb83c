"""Embeddings of items no prepared dataset holds (the item nobody has bought yet), or of plain texts.

`encode` is the call sentence-transformers users know; `encode_table` writes the rows in any export format;
`item_file_texts` builds the item texts from a raw item file exactly as `prepare` does, so an item's row equals the
one `export` writes for it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..data.prepare import file_encodings
from ..data.readers import FORMATS as SOURCE_FORMATS
from ..data.readers import get_format
from ..data.sources import existing_file
from ..data.text import DEFAULT_MAX_VALUE_CHARS, item_attributes, join_attributes
from ..embedder import LatentReasoningEmbedder
from ..embedder.shared_pass import BLOCK_SIZE
from ..errors import InputError
from .export import check_export_numbers, check_finite_rows, model_metadata, output_guards, unit_rows
from .formats import check_output, table_path, table_writer


def encode(model: LatentReasoningEmbedder | str | os.PathLike, texts: str | Sequence[str], batch_size: int = 32,
           normalize_embeddings: bool = False, convert_to_numpy: bool = True, device: str | None = None,
           show_progress_bar: bool = False, execution_path: str | None = None) -> np.ndarray | torch.Tensor:
    """Noise-free embeddings of `texts` by an embedder (or an embedder folder), as sentence-transformers'
    `encode`: float32 [len(texts), d], numpy unless `convert_to_numpy=False` (a cpu tensor), one row [d] for a
    single string. `normalize_embeddings` gives unit rows (the rows `export --normalize` writes); `device` moves
    the model there first."""
    embedder = LatentReasoningEmbedder.from_pretrained(model) if isinstance(model, (str, os.PathLike)) else model
    if device is not None:
        embedder.to(device)
    batch = [texts] if isinstance(texts, str) else list(texts)
    rows = embedder.encode(batch, batch_size=batch_size, execution_path=execution_path,
                           show_progress=show_progress_bar).numpy()
    if normalize_embeddings:
        rows = unit_rows(rows)
    if isinstance(texts, str):
        rows = rows[0]
    return rows if convert_to_numpy else torch.from_numpy(rows)


def item_file_texts(items: str | os.PathLike, source_format: str, encoding: str | None = None,
                    max_value_chars: int = DEFAULT_MAX_VALUE_CHARS, show_progress: bool = False
                    ) -> tuple[list[str], list[str]]:
    """(source ids, texts) of every item of a raw item file in one of `prepare`'s formats, in file order, each text
    built as `prepare` builds it (give the `max_value_chars` the dataset was prepared with)."""
    source = get_format(source_format)
    path = existing_file(items, "items")
    raw = source.read_items(path, file_encodings(source, path, encoding)[1], show_progress)
    if not raw.fields:
        raise InputError(f"{path}: empty input (no items)")
    texts = [join_attributes(item_attributes(fields, max_value_chars)) for fields in raw.fields.values()]
    return list(raw.fields), texts


def encode_table(embedder: LatentReasoningEmbedder, texts: Sequence[str], ids: Sequence[str],
                 output: str | os.PathLike, table_format: str = "safetensors", normalize: bool = False,
                 batch_size: int = 32, execution_path: str | None = None, model_name: str | None = None,
                 source: str | None = None, inputs: Sequence[str | os.PathLike] = (), overwrite: bool = False,
                 show_progress: bool = True) -> Path:
    """Encode `texts` and write them as a table in `table_format` with `ids` as the source ids (row i = texts[i-1]
    in the padded safetensors table), `BLOCK_SIZE` texts at a time. `source` (the item file, or "texts") goes into
    the metadata; `inputs` may not be overwritten. Returns the table's path."""
    batch_size = check_export_numbers(batch_size)[0]
    if len(ids) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(ids)} ids")
    empty = [item for item, text in zip(ids, texts) if not text.strip()]
    if empty:
        raise InputError(f"{source}: {len(empty)} items have no text (ids {empty[:10]}); the embedder needs text")
    check_output(table_format, output, None, ids)
    metadata, usage = model_metadata(embedder, len(texts), execution_path, model_name, normalize)
    guard = output_guards([output], table_format, None, inputs, overwrite)[0]
    with guard, table_writer(table_format, guard.path, embedder.config.hidden_size, ids,
                             {**metadata, "items": source}, usage) as append:
        for start in range(0, len(texts), BLOCK_SIZE):
            rows = embedder.encode(texts[start : start + BLOCK_SIZE], batch_size=batch_size,
                                   execution_path=execution_path, show_progress=show_progress).numpy()
            check_finite_rows(rows, start, model_name or embedder.name_or_path)
            append(unit_rows(rows) if normalize else rows)
    return table_path(table_format, output)


def encode_folder(model: str | os.PathLike, output: str | os.PathLike, items: str | os.PathLike | None = None,
                  source_format: str | None = None, texts: Sequence[str] = (), table_format: str = "safetensors",
                  normalize: bool = False, max_value_chars: int = DEFAULT_MAX_VALUE_CHARS, encoding: str | None = None,
                  batch_size: int = 32, execution_path: str | None = None, device: str | None = None,
                  overwrite: bool = False, show_progress: bool = True) -> tuple[Path, int]:
    """`encode_table` for an embedder folder and either a raw item file (`items` in `source_format`) or plain
    `texts` (ids 1, 2, ...): every check that needs no model first, then the folder is loaded on `device`. What
    `reaemb-trl encode` runs; returns (the table's path, its rows)."""
    from .export import default_device

    check_export_numbers(batch_size)
    if (items is None) == (not texts):
        raise InputError("give --items FILE --format F, or --text TEXT (one or more), not both")
    if items is not None and source_format is None:
        raise InputError(f"--items needs --format (one of {', '.join(SOURCE_FORMATS)})")
    check_output(table_format, output, None)
    output_guards([output], table_format, None, [model, items], overwrite)
    if items is not None:
        ids, texts = item_file_texts(items, source_format, encoding, max_value_chars, show_progress)
    else:
        ids, texts = [str(position) for position in range(1, len(texts) + 1)], list(texts)
    embedder = LatentReasoningEmbedder.from_pretrained(model).to(device or default_device())
    written = encode_table(embedder, texts, ids, output, table_format, normalize, batch_size, execution_path,
                           str(model), str(items) if items is not None else "texts", [model, items], overwrite,
                           show_progress)
    return written, len(texts)
