"""The item-embedding file that `export` writes and downstream evaluation reads (safetensors, row 0 = padding)."""

from __future__ import annotations

import contextlib
import json
import os
import struct
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from safetensors import safe_open

from ..errors import InputError
from ..io_utils import atomic_path

TABLE_KEY = "embeddings"
# safetensors dtype names of the arrays a table file holds (the table itself is float32).
_DTYPES = {np.dtype("float32"): "F32", np.dtype("float64"): "F64", np.dtype("int64"): "I64"}


@contextlib.contextmanager
def embedding_table_writer(path: str | os.PathLike, num_rows: int, dim: int, metadata: dict | None = None,
                           extra_tensors: dict[str, np.ndarray] | None = None
                           ) -> Iterator[Callable[[np.ndarray], None]]:
    """Write a (num_rows, dim) float32 table one block of rows at a time, so that a catalogue never has to be
    in memory at once: yields `append(rows)`, to be called with consecutive row blocks, row 0 (padding) first.

    The file is an ordinary safetensors file: safetensors' own writer needs every tensor in memory, so the header
    (its shapes are known in advance) is written here, then the table, then `extra_tensors`. It replaces `path`
    only when all `num_rows` rows were appended.
    """
    extras = {str(k): np.ascontiguousarray(v) for k, v in (extra_tensors or {}).items()}
    for name, array in extras.items():
        if array.dtype not in _DTYPES or name == TABLE_KEY:
            raise ValueError(f"extra tensor {name!r}: dtype {array.dtype} or name not supported")
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta.setdefault("num_items", str(num_rows - 1))
    meta.setdefault("dim", str(dim))
    header, offset = {"__metadata__": meta}, 0
    for name, dtype, shape in [(TABLE_KEY, np.dtype("float32"), (num_rows, dim)),
                               *((n, a.dtype, a.shape) for n, a in extras.items())]:
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        header[name] = {"dtype": _DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the format pads the header with spaces to an 8-byte boundary
    written = 0

    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)) + encoded)

        def append(rows: np.ndarray) -> None:
            nonlocal written
            rows = np.ascontiguousarray(rows, dtype="<f4")
            if rows.ndim != 2 or rows.shape[1] != dim or written + rows.shape[0] > num_rows:
                raise ValueError(f"{path}: a block of shape {rows.shape} does not fit the ({num_rows}, {dim}) "
                                 f"table after {written} rows")
            handle.write(rows.tobytes())
            written += rows.shape[0]

        yield append
        if written != num_rows:
            raise ValueError(f"{path}: {written} of {num_rows} rows were written")
        for array in extras.values():
            handle.write(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())


def save_embedding_table(path: str | os.PathLike, embeddings: np.ndarray, metadata: dict | None = None,
                         extra_tensors: dict[str, np.ndarray] | None = None) -> Path:
    """Write `embeddings` (N+1, d) with row 0 the padding row; metadata values are stored as strings."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (num_items + 1, dim), got shape {embeddings.shape}")
    with embedding_table_writer(path, *embeddings.shape, metadata, extra_tensors) as append:
        append(embeddings)
    return Path(path)


def load_embedding_table(path: str | os.PathLike, num_items: int | None = None) -> tuple[np.ndarray, dict]:
    """Read a table and check it: `num_items` real items plus the padding row, finite values everywhere."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: embedding file not found")
    try:
        with safe_open(str(path), framework="numpy") as handle:
            if TABLE_KEY not in handle.keys():
                raise InputError(f"{path}: no tensor named {TABLE_KEY!r} (found {sorted(handle.keys())})")
            table = handle.get_tensor(TABLE_KEY).astype(np.float32, copy=False)
            metadata = dict(handle.metadata() or {})
    except InputError:
        raise
    except Exception as err:  # safetensors raises its own error types for truncated or foreign files
        raise InputError(f"{path}: not a readable safetensors file ({err})") from err
    if table.ndim != 2:
        raise InputError(f"{path}: {TABLE_KEY!r} must be 2-D, got shape {tuple(table.shape)}")
    if num_items is not None and table.shape[0] != num_items + 1:
        raise InputError(
            f"{path}: embedding table has {table.shape[0]} rows ({table.shape[0] - 1} items + padding row) "
            f"but the dataset has {num_items} items (expected {num_items + 1} rows)"
        )
    bad_rows = np.flatnonzero(~np.isfinite(table).all(axis=1))
    if bad_rows.size:
        raise InputError(f"{path}: {bad_rows.size} rows hold NaN or inf values (item ids {bad_rows[:10].tolist()})")
    return table, metadata
