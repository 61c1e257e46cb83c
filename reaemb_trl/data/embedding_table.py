"""The item-embedding file that `export` writes and downstream evaluation reads (safetensors, row 0 = padding)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from ..errors import InputError
from ..io_utils import atomic_path

TABLE_KEY = "embeddings"


def save_embedding_table(path: str | os.PathLike, embeddings: np.ndarray, metadata: dict | None = None,
                         extra_tensors: dict[str, np.ndarray] | None = None) -> Path:
    """Write `embeddings` (N+1, d) with row 0 the padding row; metadata values are stored as strings."""
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (num_items + 1, dim), got shape {embeddings.shape}")
    tensors = {TABLE_KEY: embeddings, **{k: np.ascontiguousarray(v) for k, v in (extra_tensors or {}).items()}}
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta.setdefault("num_items", str(embeddings.shape[0] - 1))
    meta.setdefault("dim", str(embeddings.shape[1]))
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
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
