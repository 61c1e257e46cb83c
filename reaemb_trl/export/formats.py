"""Table writers, one per `--format`; docs/export_formats.md describes the files each one writes.

Every writer takes the rows of items 1..N block by block, in item order, with the source item ids of items 1..N,
so that an export never holds a whole catalogue's table. The safetensors table keeps the padding row, as downstream
evaluation reads it; the others hold items 1..N only, the layout LLM-ESR-style code expects before it inserts its
own padding row. No writer uses pickle, and every file goes
through `atomic_path`. The files beside a table are written once its last row is in, just before the table is
renamed into place: a table on disk has its companions, and an interrupted export leaves no file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from ..data import embedding_table_writer
from ..data.embedding_table import (
    EMBEDDING_COLUMN,
    IDS_SUFFIX,
    META_SUFFIX,
    ROW_COLUMN,
    SOURCE_ID_COLUMN,
    TABLE_SUFFIXES,
    companion_path,
)
from ..errors import InputError
from ..io_utils import atomic_path, write_json

TABLE_FORMATS = tuple(TABLE_SUFFIXES)  # output tables (data.readers.FORMATS are the input readers)
RECBOLE_CONFIG_SUFFIX = ".recbole.yaml"
# Characters that would split a token of RecBole's tab-separated atomic file (read with pandas' quote handling).
RECBOLE_FORBIDDEN = ("\t", "\n", "\r", '"')


def check_output(table_format: str, output: str | os.PathLike, pca: int | None, source_ids: Sequence[str] = ()) -> None:
    """Refuse, before any item is encoded, a format that does not exist, an output named for another format,
    `--pca` outside safetensors (only that file holds the PCA parameters beside the reduced table), and source ids
    the format cannot hold."""
    if table_format not in TABLE_SUFFIXES:
        raise InputError(f"--format {table_format!r}: unknown format (known: {', '.join(TABLE_FORMATS)})")
    other = next((name for name, suffix in TABLE_SUFFIXES.items()
                  if name != table_format and Path(output).suffix == suffix), None)
    if other is not None:
        raise InputError(f"--output {output}: the suffix {TABLE_SUFFIXES[other]} belongs to --format {other}, not "
                         f"--format {table_format} (name it NAME or NAME{TABLE_SUFFIXES[table_format]})")
    if pca is not None and table_format != "safetensors":
        raise InputError(f"--pca works with --format safetensors only (that file also holds the PCA parameters); "
                         f"got --format {table_format}")
    if table_format == "recbole":
        _check_recbole_ids(source_ids)


def table_path(table_format: str, output: str | os.PathLike) -> Path:
    """The table file for `--output`: `items` and `items.npy` both give `items.npy` for npy. A safetensors output
    keeps its name, whatever its suffix, as it always has."""
    output = Path(output)
    if table_format == "safetensors":
        return output
    return output.with_name(_name(output, table_format) + TABLE_SUFFIXES[table_format])


def output_files(table_format: str, output: str | os.PathLike) -> list[Path]:
    """Every file an export of `output` writes, the table first."""
    table = table_path(table_format, output)
    companions = {"safetensors": [IDS_SUFFIX, META_SUFFIX], "npy": [IDS_SUFFIX, META_SUFFIX], "parquet": [],
                  "recbole": [META_SUFFIX]}[table_format]
    extra = [recbole_config_path(table)] if table_format == "recbole" else []
    return [table, *(companion_path(table, suffix) for suffix in companions), *extra]


def is_exported_table(path: Path) -> bool:
    """Whether `path` is a table an export wrote (what --overwrite may replace): its metadata says how its rows
    are laid out, in the companion file or, for parquet, in the file."""
    try:
        if path.suffix == TABLE_SUFFIXES["parquet"]:
            import pyarrow.parquet as pq

            return b"padding_row" in (pq.read_schema(path).metadata or {})
        described = json.loads(companion_path(path, META_SUFFIX).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # no companion, or not a table
        return False
    return isinstance(described, dict) and "padding_row" in described


def recbole_config_path(itememb: str | os.PathLike) -> Path:
    """`office.itememb` -> `office.recbole.yaml`."""
    itememb = Path(itememb)
    return itememb.with_name(_name(itememb, "recbole") + RECBOLE_CONFIG_SUFFIX)


@contextlib.contextmanager
def table_writer(table_format: str, output: str | os.PathLike, dim: int, source_ids: Sequence[str], metadata: dict,
                 usage: dict, extra_tensors: dict[str, np.ndarray] | None = None
                 ) -> Iterator[Callable[[np.ndarray], None]]:
    """Write a table of items 1..N (N = len(source_ids)) in `table_format` block by block: yields `append(rows)`,
    to be called with consecutive [k, dim] blocks of item rows, item 1 first; the padding row is the writer's
    business. The table file replaces its name only when all N rows came.

    `metadata` describes where the rows come from (model, dataset, ...), `usage` how to compare them (similarity,
    normalized); every format records both, plus the format and the padding-row rule, as strings.
    `extra_tensors` (the PCA parameters) need the safetensors format.
    """
    path = table_path(table_format, output)
    include_padding = table_format == "safetensors"
    described = {**metadata, **usage, "format": table_format,
                 "padding_row": "included" if include_padding else "excluded"}
    described = {str(key): str(value) for key, value in described.items()}
    if extra_tensors and not include_padding:
        raise ValueError(f"extra tensors need the safetensors format, not {table_format}")
    if include_padding:
        # The header keeps the keys safetensors tables have always carried; META_SUFFIX has them all.
        # the writer checks every block and the row count itself (the padding row counts as row 0)
        with embedding_table_writer(path, len(source_ids) + 1, dim, metadata, extra_tensors) as append:
            append(np.zeros((1, dim), dtype=np.float32))
            yield append
        write_json(companion_path(path, IDS_SUFFIX), [None, *source_ids])  # after the table came whole
        write_json(companion_path(path, META_SUFFIX), described)
    else:
        with WRITERS[table_format](path, dim, source_ids, described) as append:
            yield append


def write_table(table_format: str, output: str | os.PathLike, table: np.ndarray, source_ids: list[str],
                metadata: dict, usage: dict, extra_tensors: dict[str, np.ndarray] | None = None) -> Path:
    """`table_writer` for a table in memory, (N+1, d) with row 0 the padding row; returns the table file's path."""
    with table_writer(table_format, output, table.shape[1], source_ids, metadata, usage, extra_tensors) as append:
        append(table[1:])
    return table_path(table_format, output)


class _RowBlocks:
    """Hands consecutive row blocks to `write(rows, ids, first)` with the source ids of those rows and the item id
    of the first (1-based); `finish` checks that every item came (raised inside the writer's atomic block, so no
    partial file is kept)."""

    def __init__(self, path: Path, dim: int, source_ids: Sequence[str],
                 write: Callable[[np.ndarray, Sequence[str], int], object]):
        self.path, self.dim, self.source_ids, self.write, self.done = path, dim, source_ids, write, 0

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.dim or self.done + rows.shape[0] > len(self.source_ids):
            raise ValueError(f"{self.path}: a block of shape {rows.shape} does not fit the "
                             f"({len(self.source_ids)}, {self.dim}) table after {self.done} rows")
        self.write(rows, self.source_ids[self.done : self.done + rows.shape[0]], self.done + 1)
        self.done += rows.shape[0]

    def finish(self) -> None:
        if self.done != len(self.source_ids):
            raise ValueError(f"{self.path}: {self.done} of {len(self.source_ids)} rows were written")


@contextlib.contextmanager
def _npy_writer(path: Path, dim: int, source_ids: Sequence[str], metadata: dict[str, str]):
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:  # the header first: np.save needs the whole array
        np.lib.format.write_array_header_1_0(handle, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                                                      "fortran_order": False, "shape": (len(source_ids), dim)})
        blocks = _RowBlocks(path, dim, source_ids, lambda rows, ids, first: handle.write(rows.tobytes()))
        yield blocks.append
        blocks.finish()
        write_json(companion_path(path, IDS_SUFFIX), list(source_ids))
        write_json(companion_path(path, META_SUFFIX), metadata)


@contextlib.contextmanager
def _parquet_writer(path: Path, dim: int, source_ids: Sequence[str], metadata: dict[str, str]):
    import pyarrow as pa  # a dependency of `datasets`
    import pyarrow.parquet as pq

    # the row (the item id of items.jsonl) and the source id, each named for what it holds
    schema = pa.schema([(ROW_COLUMN, pa.int64()), (SOURCE_ID_COLUMN, pa.string()),
                        (EMBEDDING_COLUMN, pa.list_(pa.float32(), dim))], metadata=metadata)
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema) as handle:
        def write(rows: np.ndarray, ids: Sequence[str], first: int) -> None:  # one row group per block
            vectors = pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1)), dim)
            handle.write_table(pa.table([pa.array(np.arange(first, first + len(ids))), pa.array(ids, pa.string()),
                                         vectors], schema=schema))

        blocks = _RowBlocks(path, dim, source_ids, write)
        yield blocks.append
        blocks.finish()


@contextlib.contextmanager
def _recbole_writer(path: Path, dim: int, source_ids: Sequence[str], metadata: dict[str, str]):
    _check_recbole_ids(source_ids)
    row_format = " ".join(["%.9g"] * dim)  # 9 significant digits give back the exact float32
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as handle:
        handle.write("iid:token\titem_emb:float_seq\n")
        blocks = _RowBlocks(path, dim, source_ids, lambda rows, ids, first: handle.writelines(
            f"{item}\t{row_format % tuple(row.tolist())}\n" for item, row in zip(ids, rows)))
        yield blocks.append
        blocks.finish()
        write_json(companion_path(path, META_SUFFIX), metadata)
        with atomic_path(recbole_config_path(path)) as config:
            config.write_text(_recbole_config(path), encoding="utf-8")


def _check_recbole_ids(source_ids: Sequence[str]) -> None:
    bad = next((item for item in source_ids if any(char in item for char in RECBOLE_FORBIDDEN)), None)
    if bad is not None:
        raise InputError(f"source item id {bad!r} holds a tab, a line break or a double quote, which a RecBole "
                         "atomic file cannot hold; use --format npy or parquet")


def _recbole_config(itememb: Path) -> str:
    """The RecBole settings that load `itememb` as a pretrained item embedding (`dataset.get_preload_weight`)."""
    name = _name(itememb, "recbole")
    return (f"# RecBole reads {name}.itememb from data_path/{name}/, beside {name}.inter (dataset: {name}).\n"
            "# Its iid column holds the item ids of the source data: the item_id column of the .inter file\n"
            "# must use the same ids. A model reads the table with dataset.get_preload_weight('iid')\n"
            "# (row 0 = RecBole's padding, zeros; row k = RecBole's item k).\n"
            "additional_feat_suffix: [itememb]\n"
            "load_col:\n"
            "  inter: [user_id, item_id, timestamp]  # the columns of your .inter file\n"
            "  itememb: [iid, item_emb]\n"
            "alias_of_item_id: [iid]\n"
            "preload_weight:\n"
            "  iid: item_emb\n"
            "normalize_all: false  # min-max scaling would change the vectors\n")


def _name(path: Path, table_format: str) -> str:
    """The file name without the format's suffix (`items.pca8.safetensors` -> `items.pca8`)."""
    suffix = TABLE_SUFFIXES[table_format]
    return path.name[:-len(suffix)] if path.name.endswith(suffix) and path.name != suffix else path.name



# The formats without a padding row: (path, dim, source_ids, metadata) -> a context yielding `append`.
WRITERS = {"npy": _npy_writer, "parquet": _parquet_writer, "recbole": _recbole_writer}
