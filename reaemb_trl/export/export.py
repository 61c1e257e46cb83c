"""Item table export: noise-free embeddings of every item of a prepared dataset, optionally normalised or reduced
with PCA, written in one of the formats of `formats.py`."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from sklearn.decomposition import PCA
from tqdm.auto import tqdm

from ..data import PreparedDataset, load_embedding_table
from ..embedder.shared_pass import BLOCK_SIZE, encode_checked_group, shares_pass1
from ..errors import InputError
from ..io_utils import OutputGuard
from ..validation import NonFiniteError, check_number, nonfinite_rows
from .formats import check_output, is_exported_table, output_files, table_path, table_writer, write_table
from .similarity import trained_similarity


def export_folders(models: Sequence[str | os.PathLike], data: str | os.PathLike, outputs: Sequence[str | os.PathLike],
                   options: ExportOptions | None = None, device: str | None = None) -> list[Path]:
    """`export_item_tables` for embedder folders: every check that needs no model first (outputs, dataset), then the
    folders are loaded on `device` (default: `default_device`). What `reaemb-trl export` runs."""
    from ..embedder import LatentReasoningEmbedder

    options = options if options is not None else ExportOptions()
    check_export_numbers(options.batch_size, options.pca, options.num_items)  # before any file is looked at
    if len(models) != len(outputs):
        raise InputError(f"--model was given {len(models)} times and --output {len(outputs)} times: "
                         "give one --output per --model")
    # the outputs' checks, before the models load (export_item_tables makes them again, then takes the guards)
    for output in outputs:
        check_output(options.table_format, output, options.pca)
    output_guards(outputs, options.table_format, options.pca, [data, *models], options.overwrite)
    dataset = PreparedDataset.load(data)
    check_dataset(dataset, options.num_items)  # before the models load, which takes seconds to minutes
    if not options.show_progress:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # the "Loading weights" bars
    embedders = [LatentReasoningEmbedder.from_pretrained(model).to(device or default_device()) for model in models]
    return export_item_tables(embedders, dataset, outputs, options, model_names=[str(model) for model in models])


def default_device() -> str:
    """Where an export runs unless told: the GPU when there is one."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def pca_path(output: str | os.PathLike, dim: int) -> Path:
    """`items.safetensors` -> `items.pca128.safetensors`."""
    output = Path(output)
    return output.with_name(f"{output.stem}.pca{dim}{output.suffix}")


def output_guards(outputs: Sequence[str | os.PathLike], table_format: str, pca: int | None,
                  inputs: Sequence[str | os.PathLike], overwrite: bool = False) -> list[OutputGuard]:
    """The guard of each table (its companion files and PCA table with it), built before anything is encoded:
    a table may not be written over an input, nor over a file an export did not write, nor twice in one run."""
    tables = [table_path(table_format, output).resolve() for output in outputs]
    repeated = next((output for output, table in zip(outputs, tables) if tables.count(table) > 1), None)
    if repeated is not None:
        raise InputError(f"--output {repeated}: two tables of this run would be written to one file")
    return [OutputGuard(table, kind="file", marker=is_exported_table, inputs=inputs, overwrite=overwrite,
                        also=[*output_files(table_format, table)[1:],
                              *(output_files("safetensors", pca_path(table, pca)) if pca is not None else [])])
            for table in tables]


@dataclass
class ExportOptions:
    """How an export encodes and writes its tables (`export_item_table(s)`, the export CLI, the pipeline).

    `num_items`, when given, is the item count the caller expects (e.g. the dataset the model was trained on): a
    dataset of another size is refused. With `pca` (safetensors only), a second file (`pca_path`) holds the reduced
    table plus the scikit-learn PCA parameters as the tensors `pca_components`, `pca_mean`, `pca_explained_variance`.
    `normalize` L2-normalises every item row written (the PCA is fitted on the normalised rows, and its reduced rows
    are normalised again). An existing table is replaced only with `overwrite`, and only if an export wrote it
    (`output_guards`). Items are encoded and written `block_size` at a time."""

    pca: int | None = None
    batch_size: int = 32
    execution_path: str | None = None
    num_items: int | None = None
    table_format: str = "safetensors"
    normalize: bool = False
    block_size: int = BLOCK_SIZE
    overwrite: bool = False
    show_progress: bool = True


def export_item_table(embedder, dataset: PreparedDataset, output: str | os.PathLike,
                      options: ExportOptions | None = None, model_name: str | None = None) -> list[Path]:
    """Embed items 1..N with `embedder.encode` and write the table in `options.table_format` (safetensors: row 0
    zeros, the file `load_embedding_table` reads), with the source-id map and metadata beside it
    (docs/export_formats.md). Returns the paths of the tables (the PCA one too)."""
    return export_item_tables([embedder], dataset, [output], options, None if model_name is None else [model_name])


def export_item_tables(embedders: Sequence, dataset: PreparedDataset, outputs: Sequence[str | os.PathLike],
                       options: ExportOptions | None = None,
                       model_names: Sequence[str] | None = None) -> list[Path]:
    """`export_item_table` for several embedders, one output each. On the fast path, the embedders that share
    pass 1 with the first (`shares_pass1`: an LRCL folder and the CRRL folder trained from it) are encoded from one
    pass 1 per batch, which gives the same tables; the others are encoded on their own.

    Items are encoded and written `block_size` at a time (batches of similar length inside a block), so memory
    holds one block of rows per table whatever the catalogue's size; only `pca` reads a whole table back to fit.
    """
    options = options if options is not None else ExportOptions()
    execution_path, show_progress = options.execution_path, options.show_progress
    table_format, normalize, overwrite = options.table_format, options.normalize, options.overwrite
    if len(embedders) != len(outputs):
        raise ValueError(f"{len(embedders)} embedders but {len(outputs)} outputs")
    batch_size, block_size, pca, num_items = check_export_numbers(options.batch_size, options.pca, options.num_items,
                                                                  options.block_size)
    for output in outputs:
        check_output(table_format, output, pca, dataset.source_ids)
    names = list(model_names or [None] * len(embedders))
    folders = [dataset.path, *(name or embedder.name_or_path for embedder, name in zip(embedders, names))]
    guards = output_guards(outputs, table_format, pca, [f for f in folders if f and Path(f).exists()], overwrite)
    texts = check_dataset(dataset, num_items)
    for embedder in embedders:
        _check_pca(embedder, dataset, pca)
    with contextlib.ExitStack() as held:  # each table's lock, until its PCA table is written too
        targets = [held.enter_context(guard).path for guard in guards]
        _write_tables(embedders, dataset, targets, names, execution_path, table_format, normalize, texts,
                      batch_size, block_size, show_progress)
        for embedder, target, name in zip(embedders, targets, names):
            if pca is not None:
                _write_pca(embedder, dataset, target, pca, execution_path, name, normalize)
    return [path for output in outputs
            for path in (table_path(table_format, output), *([pca_path(output, pca)] if pca is not None else []))]


def _write_tables(embedders: Sequence, dataset: PreparedDataset, targets: list[Path], names: list[str | None],
                  execution_path: str | None, table_format: str, normalize: bool, texts: list[str], batch_size: int,
                  block_size: int, show_progress: bool) -> None:
    first = embedders[0]
    # pass 1 is worth sharing on the fast path (a decoder's KV cache); encoders run whole passes
    worth_sharing = first.resolve_execution_path(execution_path) == "fast"
    group = [first, *(e for e in embedders[1:] if worth_sharing and shares_pass1(first, e, texts))]
    with contextlib.ExitStack() as stack:
        appends = [stack.enter_context(_table_writer(embedder, dataset, target, execution_path, name, table_format,
                                                     normalize))
                   for embedder, target, name in zip(embedders, targets, names)]
        # one block: the encoder's own bar counts batches; several: this bar counts blocks
        per_batch = show_progress and len(texts) <= block_size
        progress = stack.enter_context(tqdm(total=len(texts), desc="export", unit="item",
                                            disable=not show_progress or per_batch))
        for start in range(0, len(texts), block_size):
            block = texts[start : start + block_size]
            shared = encode_checked_group(group, block, batch_size, per_batch) if len(group) > 1 else []
            encoded = dict(zip(map(id, group), shared))
            for embedder, append, name in zip(embedders, appends, names):
                rows = encoded.get(id(embedder))
                if rows is None:
                    rows = embedder.encode(block, batch_size=batch_size, execution_path=execution_path,
                                           show_progress=per_batch)
                rows = rows.numpy()
                check_finite_rows(rows, start, name or embedder.name_or_path)
                append(unit_rows(rows) if normalize else rows)
            progress.update(len(block))


def check_export_numbers(batch_size: int, pca: int | None = None, num_items: int | None = None,
                         block_size: int = BLOCK_SIZE) -> tuple[int, int, int | None, int | None]:
    """The export's numeric options checked (integers, >= 1; `pca` and `num_items` may be None), as the CLI names
    them: `--batch-size -4` or `--pca 0` fail before any model or dataset is read."""
    return (check_number(batch_size, "--batch-size", "int", ">= 1"),
            check_number(block_size, "block_size", "int", ">= 1"),
            check_number(pca, "--pca", "int", ">= 1", optional=True),
            check_number(num_items, "--num-items", "int", ">= 1", optional=True))


def check_finite_rows(rows: np.ndarray, start: int, model: str | None) -> None:
    """No table is written with a NaN / inf row: the model's output is broken (NaN weights, an overflowing dtype)."""
    bad = nonfinite_rows(rows)
    if bad:
        item_ids = [start + 1 + index for index in bad]
        raise NonFiniteError(f"{model}: {len(bad)} items of this block embed to NaN or inf values (item ids "
                             f"{item_ids[:10]}); no table was written. Check the model's weights (a diverged "
                             "training) or load it in float32")


def check_dataset(dataset: PreparedDataset, num_items: int | None = None) -> list[str]:
    """The texts of items 1..N; refuses, before any model is loaded, a dataset of another size than `num_items`
    or with items that have no text."""
    if num_items is not None and num_items != dataset.num_items:
        raise InputError(f"{dataset.path}: the dataset has {dataset.num_items} items but the export was asked "
                         f"for {num_items}")
    texts = dataset.item_texts[1:]
    missing = [item_id for item_id, text in enumerate(texts, start=1) if not text.strip()]
    if missing:
        raise InputError(f"{dataset.path}: {len(missing)} items have no text (item ids {missing[:10]}); "
                         "the embedder needs item text (prepare the dataset with an item file)")
    return texts


def _check_pca(embedder, dataset: PreparedDataset, pca: int | None) -> None:
    if pca is not None and not 1 <= pca <= min(dataset.num_items, embedder.config.hidden_size):
        raise InputError(f"--pca {pca}: must be between 1 and min(num_items, hidden size) = "
                         f"{min(dataset.num_items, embedder.config.hidden_size)}")


def model_metadata(embedder, num_items: int, execution_path: str | None, model_name: str | None,
                   normalize: bool) -> tuple[dict, dict]:
    """(metadata, usage) of a table of `num_items` rows encoded by `embedder`: where its rows come from, and how
    to compare them."""
    folder = model_name or embedder.name_or_path
    metadata = {
        "model": folder or embedder.config.backbone_name_or_path,
        "execution_path": embedder.resolve_execution_path(execution_path),
        "pooling": embedder.config.pooling,
        "dim": embedder.config.hidden_size,
        "num_items": num_items,
    }
    return metadata, {"similarity": trained_similarity(folder), "normalized": "true" if normalize else "false"}


def _table_metadata(embedder, dataset: PreparedDataset, execution_path: str | None, model_name: str | None,
                    normalize: bool) -> tuple[dict, dict]:
    """`model_metadata` of a dataset's table, with the dataset's fingerprint."""
    metadata, usage = model_metadata(embedder, dataset.num_items, execution_path, model_name, normalize)
    return {**metadata, "dataset_sha256": dataset.sha256}, usage


def _table_writer(embedder, dataset: PreparedDataset, output, execution_path: str | None, model_name: str | None,
                  table_format: str, normalize: bool):
    metadata, usage = _table_metadata(embedder, dataset, execution_path, model_name, normalize)
    return table_writer(table_format, output, embedder.config.hidden_size, dataset.source_ids, metadata, usage)


def _write_pca(embedder, dataset: PreparedDataset, output, pca: int, execution_path: str | None,
               model_name: str | None, normalize: bool) -> Path:
    """The reduced table beside the exported one (safetensors), with the scikit-learn PCA parameters."""
    embeddings = load_embedding_table(output, dataset.num_items)[0][1:]
    reducer = PCA(n_components=pca, random_state=0).fit(embeddings)
    reduced = np.zeros((dataset.num_items + 1, pca), dtype=np.float32)
    projected = reducer.transform(embeddings)
    reduced[1:] = unit_rows(projected) if normalize else projected
    extra = {
        "pca_components": reducer.components_.astype(np.float32),
        "pca_mean": reducer.mean_.astype(np.float32),
        "pca_explained_variance": reducer.explained_variance_.astype(np.float32),
    }
    metadata, usage = _table_metadata(embedder, dataset, execution_path, model_name, normalize)
    metadata = {**metadata, "dim": pca, "pca_from_dim": embeddings.shape[1],
                "pca_explained_variance_ratio": f"{reducer.explained_variance_ratio_.sum():.6f}"}
    return write_table("safetensors", pca_path(output, pca), reduced, dataset.source_ids, metadata, usage,
                       extra_tensors=extra)


def unit_rows(embeddings: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings / np.where(norms > 0, norms, 1.0)  # an all-zero row stays zero instead of becoming NaN
