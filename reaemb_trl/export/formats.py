"""Table writers, one per `--format`; docs/export_formats.md describes the files each one writes.

Every writer gets the full table (row 0 = padding, row i = item i) and the source item ids of items 1..N. The
safetensors table keeps the padding row, as downstream evaluation reads it; the others hold items 1..N only, the
layout LLM-ESR-style code expects before it inserts its own padding row. No writer uses pickle, and every file goes
through `atomic_path`. The files beside a table are written before it, so a table on disk has its companions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..data import save_embedding_table
from ..errors import InputError
from ..io_utils import atomic_path, write_json

SUFFIXES = {"safetensors": ".safetensors", "npy": ".npy", "parquet": ".parquet", "recbole": ".itememb"}
FORMATS = tuple(SUFFIXES)
IDS_SUFFIX = ".ids.json"
META_SUFFIX = ".meta.json"
RECBOLE_CONFIG_SUFFIX = ".recbole.yaml"
# Characters that would split a token of RecBole's tab-separated atomic file (read with pandas' quote handling).
RECBOLE_FORBIDDEN = ("\t", "\n", "\r", '"')


def check_output(table_format: str, output: str | os.PathLike, pca: int | None, source_ids: Sequence[str] = ()) -> None:
    """Refuse, before any item is encoded, a format that does not exist, an output named for another format,
    `--pca` outside safetensors (only that file holds the PCA parameters beside the reduced table), and source ids
    the format cannot hold."""
    if table_format not in SUFFIXES:
        raise InputError(f"--format {table_format!r}: unknown format (known: {', '.join(FORMATS)})")
    other = next((name for name, suffix in SUFFIXES.items()
                  if name != table_format and Path(output).suffix == suffix), None)
    if other is not None:
        raise InputError(f"--output {output}: the suffix {SUFFIXES[other]} belongs to --format {other}, not "
                         f"--format {table_format} (name it NAME or NAME{SUFFIXES[table_format]})")
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
    return output.with_name(_name(output, table_format) + SUFFIXES[table_format])


def companion_path(table: str | os.PathLike, suffix: str) -> Path:
    """`items.npy` + `.ids.json` -> `items.npy.ids.json`: named after the whole table file, so tables of one NAME in
    two formats (whose rows differ by the padding row) never share an id map."""
    table = Path(table)
    return table.with_name(table.name + suffix)


def recbole_config_path(itememb: str | os.PathLike) -> Path:
    """`office.itememb` -> `office.recbole.yaml`."""
    itememb = Path(itememb)
    return itememb.with_name(_name(itememb, "recbole") + RECBOLE_CONFIG_SUFFIX)


def write_table(table_format: str, output: str | os.PathLike, table: np.ndarray, source_ids: list[str],
                metadata: dict, usage: dict, extra_tensors: dict[str, np.ndarray] | None = None) -> Path:
    """Write `table` (N+1, d) in `table_format` and return the table file's path.

    `metadata` describes where the rows come from (model, dataset, ...), `usage` how to compare them (similarity,
    normalized); every format records both, plus the format and the padding-row rule, as strings.
    `extra_tensors` (the PCA parameters) need the safetensors format.
    """
    path = table_path(table_format, output)
    include_padding = table_format == "safetensors"
    described = {**metadata, **usage, "format": table_format,
                 "padding_row": "included" if include_padding else "excluded"}
    described = {str(key): str(value) for key, value in described.items()}
    if include_padding:
        write_json(companion_path(path, IDS_SUFFIX), [None, *source_ids])
        write_json(companion_path(path, META_SUFFIX), described)
        # The header keeps the keys safetensors tables have always carried; META_SUFFIX has them all.
        save_embedding_table(path, table, metadata, extra_tensors=extra_tensors)
    else:
        WRITERS[table_format](path, np.ascontiguousarray(table[1:], dtype=np.float32), source_ids, described)
    return path


def _write_npy(path: Path, rows: np.ndarray, source_ids: list[str], metadata: dict[str, str]) -> None:
    write_json(companion_path(path, IDS_SUFFIX), source_ids)
    write_json(companion_path(path, META_SUFFIX), metadata)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:  # np.save on a path would append ".npy" to it
        np.save(handle, rows, allow_pickle=False)


def _write_parquet(path: Path, rows: np.ndarray, source_ids: list[str], metadata: dict[str, str]) -> None:
    import pyarrow as pa  # a dependency of `datasets`
    import pyarrow.parquet as pq

    vectors = pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1)), rows.shape[1])
    table = pa.table({"item_id": pa.array(source_ids, type=pa.string()), "embedding": vectors})
    with atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata(metadata), tmp)


def _write_recbole(path: Path, rows: np.ndarray, source_ids: list[str], metadata: dict[str, str]) -> None:
    _check_recbole_ids(source_ids)
    write_json(companion_path(path, META_SUFFIX), metadata)
    with atomic_path(recbole_config_path(path)) as tmp:
        tmp.write_text(_recbole_config(path), encoding="utf-8")
    row_format = " ".join(["%.9g"] * rows.shape[1])  # 9 significant digits give back the exact float32
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as handle:
        handle.write("iid:token\titem_emb:float_seq\n")
        handle.writelines(f"{item}\t{row_format % tuple(row.tolist())}\n" for item, row in zip(source_ids, rows))


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
    suffix = SUFFIXES[table_format]
    return path.name[:-len(suffix)] if path.name.endswith(suffix) and path.name != suffix else path.name



WRITERS: dict[str, Callable[[Path, np.ndarray, list[str], dict[str, str]], None]] = {
    "npy": _write_npy, "parquet": _write_parquet, "recbole": _write_recbole,
}
