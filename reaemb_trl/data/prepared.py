"""Reading a prepared-dataset folder (items.jsonl, inter.txt, cooccurrence.npz, dataset.json)."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import InputError
from ..io_utils import sha256_file
from .cooccurrence import HOLDOUT, training_popularity
from .sources import load_json_document, parse_record, read_document, read_lines, require
from .text import DEFAULT_MAX_VALUE_CHARS, item_attributes


def _read_items(path: Path) -> tuple[list[str], list[dict[str, Any]], list[str]]:
    source_ids, fields, texts = [], [], []
    for number, line in read_lines(path, show_progress=False):
        record = parse_record(path, number, line)
        item_id = record.get("item_id")
        if item_id != len(source_ids) + 1:
            raise InputError(f"{path}, line {number}: item_id {item_id!r} breaks the numbering 1, 2, ... "
                             f"(expected {len(source_ids) + 1})")
        source_ids.append(str(require(record, "source_id", path, number)))
        fields.append(record.get("fields") or {})
        texts.append(str(record.get("text") or ""))
    if not source_ids:
        raise InputError(f"{path}: empty input (no items)")
    return source_ids, fields, texts


def _check_unchanged(file: Path, metadata: dict) -> None:
    """`file` as `prepare` wrote it (its sha256 in dataset.json): a truncated or edited file would otherwise be
    read under the original fingerprint, and a damaged npz would fail deep inside scipy."""
    if sha256_file(file) != metadata["outputs"].get(file.name):
        raise InputError(f"{file}: changed since `reaemb-trl prepare` wrote it (its sha256 differs from the one in "
                         "dataset.json); prepare the dataset again")


def _line_numbers(text: str) -> np.ndarray:
    """The line of each non-blank line, in order: where pair k of `text.split()` sits in the file."""
    return np.array([number for number, line in enumerate(text.split("\n"), 1) if line.strip()])


def _read_sequences(path: Path, num_items: int) -> list[np.ndarray]:
    text = read_document(path)
    try:
        pairs = np.array(text.split(), dtype=np.int64).reshape(-1, 2)
    except ValueError:
        for number, line in enumerate(text.split("\n"), 1):
            parts = line.split()
            if line.strip() and (len(parts) != 2 or not all(part.isdigit() for part in parts)):
                raise InputError(f"{path}, line {number}: expected 'user item' (two integers), got {line!r}")
        raise
    if not pairs.size:
        raise InputError(f"{path}: empty input (no interactions)")
    users, items = pairs[:, 0], pairs[:, 1]
    steps = np.diff(users)
    if users[0] != 1 or ((steps != 0) & (steps != 1)).any():
        pair = 0 if users[0] != 1 else int(np.flatnonzero((steps != 0) & (steps != 1))[0]) + 1
        raise InputError(f"{path}, line {_line_numbers(text)[pair]}: users must be numbered 1, 2, ... with each "
                         "user's lines together")
    bad = np.flatnonzero((items < 1) | (items > num_items))
    if bad.size:
        raise InputError(f"{path}, line {_line_numbers(text)[bad[0]]}: item {items[bad[0]]} is outside "
                         f"1..{num_items} (items.jsonl)")
    return np.split(items, np.flatnonzero(steps) + 1)


class PreparedDataset:
    """A prepared folder in memory: item ids 1..num_items (0 is padding), users' sequences in time order."""

    def __init__(self, path: Path, metadata: dict, source_ids: list[str], fields: list[dict[str, Any]],
                 texts: list[str], sequences: list[np.ndarray]):
        self.path = path
        self.metadata = metadata
        self.source_ids = source_ids
        self.sequences = sequences
        self._fields = fields
        self.item_texts = ["", *texts]

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PreparedDataset":
        path = Path(path)
        if not path.is_dir():
            raise InputError(f"{path}: prepared dataset folder not found")
        for name in ("dataset.json", "items.jsonl", "inter.txt"):
            if not (path / name).is_file():
                raise InputError(f"{path}: not a prepared dataset folder ({name} is missing)")
        metadata = load_json_document(path / "dataset.json")
        missing = [key for key in ("sha256", "counts", "outputs") if not isinstance(metadata, dict)
                   or key not in metadata or (key == "outputs" and not isinstance(metadata[key], dict))]
        if missing:
            raise InputError(f"{path / 'dataset.json'}: not written by `reaemb-trl prepare` (no {missing[0]!r}); "
                             "prepare the dataset again")
        source_ids, fields, texts = _read_items(path / "items.jsonl")
        sequences = _read_sequences(path / "inter.txt", len(source_ids))
        # after reading, so that a malformed file is reported by its line rather than by its hash
        for name in ("items.jsonl", "inter.txt"):
            _check_unchanged(path / name, metadata)
        return cls(path, metadata, source_ids, fields, texts, sequences)

    @property
    def num_users(self) -> int:
        return len(self.sequences)

    @property
    def num_items(self) -> int:
        return len(self.source_ids)

    @property
    def has_text(self) -> bool:
        return any(self.item_texts)

    @property
    def sha256(self) -> str:
        return self.metadata["sha256"]

    def item_attributes(self, item_id: int) -> list[tuple[str, str]]:
        """Cleaned (key, value) pairs, title first; `join_attributes` of them is `item_texts[item_id]`."""
        if not 1 <= item_id <= self.num_items:
            raise IndexError(f"item id {item_id} is outside 1..{self.num_items}")
        max_chars = self.metadata.get("parameters", {}).get("max_value_chars", DEFAULT_MAX_VALUE_CHARS)
        return item_attributes(self._fields[item_id - 1], max_chars)

    @cached_property
    def cooccurrence(self) -> sp.csr_matrix:
        """(N+1, N+1) counts over training prefixes only."""
        file = self.path / "cooccurrence.npz"
        if not file.is_file():
            raise InputError(f"{file}: co-occurrence matrix missing (prepare the folder with `reaemb-trl prepare`)")
        _check_unchanged(file, self.metadata)
        matrix = sp.load_npz(file).tocsr()  # npz holds arrays only: no pickle involved
        if matrix.shape != (self.num_items + 1, self.num_items + 1):
            raise InputError(f"{file}: shape {matrix.shape} does not match {self.num_items} items + padding")
        return matrix

    @cached_property
    def item_popularity(self) -> np.ndarray:
        """(N+1,) interaction counts on the training prefixes (the last two items of each user left out)."""
        return training_popularity(self.sequences, self.num_items, HOLDOUT)
