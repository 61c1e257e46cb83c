"""The item-embedding files: the safetensors table `export` writes by default (row 0 = padding), and the reader of
every format `export` writes, or a table from another tool, lined up with a prepared dataset's items."""

from __future__ import annotations

import contextlib
import json
import os
import struct
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from safetensors import safe_open

from ..errors import InputError
from ..io_utils import atomic_path
from .sources import load_json_document, read_document

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
    _check_finite(path, table)
    return table, metadata


# ------------------------------------------------------------------------------ tables in every export format
# The file names of each format (export writes them, `read_item_table` reads them back).
TABLE_SUFFIXES = {"safetensors": ".safetensors", "npy": ".npy", "parquet": ".parquet", "recbole": ".itememb"}
IDS_SUFFIX = ".ids.json"
META_SUFFIX = ".meta.json"
# Parquet columns: the row says where an item sits in the prepared dataset (its item_id in items.jsonl, its row in
# a safetensors table), the source id what the raw data calls it. Tables written before this split had one
# ambiguous `item_id` column (holding source ids), which the reader refuses by name.
ROW_COLUMN = "row"
SOURCE_ID_COLUMN = "source_item_id"
EMBEDDING_COLUMN = "embedding"
OLD_ID_COLUMN = "item_id"


def companion_path(table: str | os.PathLike, suffix: str) -> Path:
    """`items.npy` + `.ids.json` -> `items.npy.ids.json`: named after the whole table file, so tables of one NAME in
    two formats (whose rows differ by the padding row) never share an id map."""
    table = Path(table)
    return table.with_name(table.name + suffix)


def read_item_table(path: str | os.PathLike, source_ids: Sequence[str],
                    dataset_sha256: str | None = None) -> tuple[np.ndarray, dict]:
    """Any table `export` writes, or one from another tool, as the (N+1, d) table of a dataset whose items 1..N
    have `source_ids`: row 0 the padding row (zeros unless a positional table says otherwise; downstream never
    reads it), row i = item i. Returns (table, metadata).

    The format follows the suffix (.npy, .parquet, .itememb; anything else is read as safetensors). Rows are
    matched to items by the table's own id map when it has one (`NAME.ids.json` beside a safetensors / npy file,
    the `source_item_id` or `row` column of a parquet file, the token column of a RecBole file), else by position:
    N rows for items 1..N, or N+1 with the padding row first. A table whose ids or row count do not match the
    dataset is refused, as is one whose metadata names another dataset (`dataset_sha256`)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: embedding file not found")
    rows, ids, metadata = _READERS.get(path.suffix, _read_safetensors)(path, source_ids)
    if rows.ndim != 2:
        raise InputError(f"{path}: the table must be 2-D (items, dim), got shape {tuple(rows.shape)}")
    table = _by_item(path, rows.astype(np.float32, copy=False), ids, list(source_ids))
    _check_finite(path, table)
    made_for = metadata.get("dataset_sha256")
    if dataset_sha256 and made_for and made_for != dataset_sha256:
        raise InputError(f"{path}: the table was exported from another dataset (dataset_sha256 {made_for[:12]}..., "
                         f"this one {dataset_sha256[:12]}...); export it again from this dataset")
    return table, metadata


def _check_finite(path: Path, table: np.ndarray) -> None:
    bad_rows = np.flatnonzero(~np.isfinite(table).all(axis=1))
    if bad_rows.size:
        raise InputError(f"{path}: {bad_rows.size} rows hold NaN or inf values (item ids {bad_rows[:10].tolist()})")


def _by_item(path: Path, rows: np.ndarray, ids: list | None, source_ids: list[str]) -> np.ndarray:
    """The rows in item order with the padding row first; ids are source ids (str, None for a padding row) or
    dataset rows (int)."""
    num_items = len(source_ids)
    if ids is None:  # by position
        if rows.shape[0] == num_items + 1:  # the padding row first, as in a safetensors table
            return np.ascontiguousarray(rows)
        if rows.shape[0] == num_items:
            return np.vstack([np.zeros((1, rows.shape[1]), dtype=np.float32), rows])
        raise InputError(f"{path}: {rows.shape[0]} rows and no id map, but the dataset has {num_items} items (give "
                         f"{num_items} rows in the dataset's item order, or {num_items + 1} with a padding row "
                         f"first, or an id map {path.name}{IDS_SUFFIX})")
    if len(ids) != rows.shape[0]:
        raise InputError(f"{path}: {rows.shape[0]} rows but its id map holds {len(ids)} ids")
    padding = int(ids[0] is None)  # a safetensors id map starts with null, for the padding row
    if None in ids[padding:] or (padding and rows[0].any()):
        raise InputError(f"{path}: only the first row may have no id (null), and only as an all-zero padding row")
    table = np.zeros((num_items + 1, rows.shape[1]), dtype=np.float32)
    table[_item_positions(path, ids[padding:], source_ids)] = rows[padding:]
    return table


def _item_positions(path: Path, ids: list, source_ids: list[str]) -> np.ndarray:
    """The dataset row (1..N) of each id; refuses repeated, unknown and missing ids by name."""
    num_items = len(source_ids)
    if ids and all(isinstance(item, (int, np.integer)) for item in ids):  # parquet `row` column
        what, known = ROW_COLUMN, {row: row for row in range(1, num_items + 1)}
        expected = list(range(1, num_items + 1))
    else:
        ids = [str(item) for item in ids]
        what, known = "source id", {source_id: row for row, source_id in enumerate(source_ids, 1)}
        expected = source_ids
    repeated = next((item for item, count in Counter(ids).items() if count > 1), None)
    if repeated is not None:
        raise InputError(f"{path}: {what} {repeated!r} appears more than once")
    unknown = [item for item in ids if item not in known]
    if unknown:
        raise InputError(f"{path}: {len(unknown)} {what}s are not items of the dataset (first: "
                         f"{unknown[:3]}); was the table made for another dataset, or are these another kind of id?")
    if len(ids) < num_items:
        given = set(ids)
        missing = [item for item in expected if item not in given]
        raise InputError(f"{path}: {len(missing)} of the dataset's {num_items} items have no row (first {what}s: "
                         f"{missing[:3]})")
    return np.array([known[item] for item in ids], dtype=np.int64)


def _companion_json(path: Path, suffix: str):
    file = companion_path(path, suffix)
    return load_json_document(file) if file.is_file() else None


def _id_map(path: Path) -> list | None:
    ids = _companion_json(path, IDS_SUFFIX)
    if ids is not None and not (isinstance(ids, list) and all(item is None or isinstance(item, str) for item in ids)):
        raise InputError(f"{companion_path(path, IDS_SUFFIX)}: expected a JSON list of source ids (strings)")
    return ids


# Readers: (path, the dataset's source ids) -> (rows, ids or None, metadata).
def _read_safetensors(path: Path, source_ids: Sequence[str]) -> tuple[np.ndarray, list | None, dict]:
    ids = _id_map(path)  # without one, the rows must be the padding row and items 1..N, as always
    table, header = load_embedding_table(path, num_items=None if ids else len(source_ids))
    return table, ids, {**header, **(_companion_json(path, META_SUFFIX) or {})}  # the companion holds every key


def _read_npy(path: Path, source_ids: Sequence[str]) -> tuple[np.ndarray, list | None, dict]:
    try:
        rows = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:  # a truncated file, a foreign file, an object array
        raise InputError(f"{path}: not a readable .npy array file ({err})") from err
    if not np.issubdtype(rows.dtype, np.floating):
        raise InputError(f"{path}: expected floating-point rows, got dtype {rows.dtype}")
    return rows, _id_map(path), _companion_json(path, META_SUFFIX) or {}


def _read_parquet(path: Path, source_ids: Sequence[str]) -> tuple[np.ndarray, list, dict]:
    import pyarrow as pa  # a dependency of `datasets`
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as err:
        raise InputError(f"{path}: not a readable parquet file ({err})") from err
    columns = table.column_names
    id_columns = [name for name in (SOURCE_ID_COLUMN, ROW_COLUMN) if name in columns]
    if not id_columns and OLD_ID_COLUMN in columns:
        raise InputError(f"{path}: column {OLD_ID_COLUMN!r} is ambiguous (older exports held source ids in it, "
                         f"items.jsonl holds dataset rows): rename it to {SOURCE_ID_COLUMN!r} if it holds source ids, "
                         f"or {ROW_COLUMN!r} if it holds the dataset's item ids 1..N")
    if not id_columns or EMBEDDING_COLUMN not in columns:
        raise InputError(f"{path}: expected an id column ({SOURCE_ID_COLUMN!r} or {ROW_COLUMN!r}) and an "
                         f"{EMBEDDING_COLUMN!r} column; found {columns}")
    vectors = table.column(EMBEDDING_COLUMN).combine_chunks()
    is_list = pa.types.is_list(vectors.type) or pa.types.is_fixed_size_list(vectors.type)
    if not is_list or not pa.types.is_floating(vectors.type.value_type) or vectors.null_count or not len(vectors):
        raise InputError(f"{path}: column {EMBEDDING_COLUMN!r} must hold one list of floats per row, no nulls; "
                         f"got {vectors.type} with {vectors.null_count} nulls in {len(vectors)} rows")
    lengths = set(pc.list_value_length(vectors).to_pylist())
    if len(lengths) != 1:
        raise InputError(f"{path}: the rows of {EMBEDDING_COLUMN!r} have different lengths {sorted(lengths)[:5]}")
    rows = vectors.flatten().to_numpy(zero_copy_only=False).reshape(table.num_rows, lengths.pop())
    ids = _parquet_ids(path, table, source_ids)
    metadata = {key.decode(): value.decode() for key, value in (table.schema.metadata or {}).items()}
    return rows, ids, metadata


def _parquet_ids(path: Path, table, source_ids: Sequence[str]) -> list:
    """The source ids, else the rows. With both columns, each row must be its source id's row in the dataset: a
    table whose rows were joined on the wrong id is refused."""
    import pyarrow as pa

    if SOURCE_ID_COLUMN not in table.column_names:
        rows = table.column(ROW_COLUMN)
        if not pa.types.is_integer(rows.type) or rows.null_count:
            raise InputError(f"{path}: column {ROW_COLUMN!r} must hold integers (the dataset's item ids), no nulls")
        return rows.to_pylist()
    ids = table.column(SOURCE_ID_COLUMN).cast("string").to_pylist()
    if None in ids:
        raise InputError(f"{path}: column {SOURCE_ID_COLUMN!r} holds nulls")
    if ROW_COLUMN in table.column_names:
        dataset_row = {source_id: row for row, source_id in enumerate(source_ids, 1)}
        for source_id, row in zip(ids, table.column(ROW_COLUMN).to_pylist()):
            if dataset_row.get(source_id, row) != row:  # an unknown source id is refused by name later
                raise InputError(f"{path}: {SOURCE_ID_COLUMN} {source_id!r} has {ROW_COLUMN} {row}, but it is item "
                                 f"{dataset_row[source_id]} of the dataset (a table of another dataset or item "
                                 f"order: drop its {ROW_COLUMN!r} column to match rows by source id alone)")
    return ids


def _read_recbole(path: Path, source_ids: Sequence[str]) -> tuple[np.ndarray, list, dict]:
    """RecBole's atomic file: a `NAME:token` id column and a `NAME:float_seq` vector column, tab-separated."""
    lines = read_document(path).splitlines()
    header = lines[0].split("\t") if lines else []
    kinds = [column.rpartition(":")[2] for column in header]
    if kinds != ["token", "float_seq"]:
        raise InputError(f"{path}, line 1: expected the columns 'iid:token<TAB>item_emb:float_seq', got {header}")
    ids, rows = [], []
    for number, line in enumerate(lines[1:], start=2):
        item, _, vector = line.partition("\t")
        try:
            rows.append(np.array(vector.split(" "), dtype=np.float32))
        except ValueError:
            raise InputError(f"{path}, line {number}: expected 'id<TAB>numbers separated by spaces'") from None
        if rows[-1].shape != rows[0].shape:
            raise InputError(f"{path}, line {number}: {rows[-1].size} values, line 2 has {rows[0].size}")
        ids.append(item)
    if not rows:
        raise InputError(f"{path}: no rows")
    return np.stack(rows), ids, _companion_json(path, META_SUFFIX) or {}


# The reader of each suffix; any other name is read as safetensors (export keeps a safetensors output's name).
_READERS = {TABLE_SUFFIXES["npy"]: _read_npy, TABLE_SUFFIXES["parquet"]: _read_parquet,
            TABLE_SUFFIXES["recbole"]: _read_recbole}
