"""Item co-occurrence on the users' training prefixes (validation and test items are never counted).

At catalogue scale the matrix is built, scored and saved in row blocks sized by a memory budget (`max_memory`), so
no step holds more than one block of temporaries; `SpilledRows` keeps the finished blocks on disk for `prepare`.
"""

from __future__ import annotations

import operator
import os
import re
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..errors import InputError

# Leave-one-out: each user's last item is the test target, the one before it the validation target.
HOLDOUT = 2
# The default memory budget: this share of the machine's memory (or of the container's limit, when lower).
DEFAULT_MEMORY_SHARE = 0.25
# Where a container finds its own memory limit: cgroup v2, then v1 (no file, or "max": no limit).
_CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
# Temporaries per stored entry of a block while the product is formed and its diagonal dropped (counts and
# indices, their filtered copies, the mask), and per windowed pair (row, column, their copies, the COO -> CSR sort).
_PRODUCT_BYTES_PER_ENTRY = 24
_PAIR_BYTES_PER_ENTRY = 48
_CHUNK_BYTES = 16 << 20  # how much of a spilled file is read at once
# zlib's fastest level: on co-occurrence indices (most of the file) it compresses as well as the default (6) in a
# sixth of the time, which at catalogue scale was minutes; the file comes out about the same size.
_DEFLATE_LEVEL = 1
_MEMORY_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", re.IGNORECASE)


def default_max_memory() -> int:
    """DEFAULT_MEMORY_SHARE of the memory this process may use, in bytes: the machine's physical memory, or a
    container's limit when lower (a container reports its host's memory, which a quarter of could exceed its own)."""
    return int(min([os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), *_cgroup_limits()])
               * DEFAULT_MEMORY_SHARE)


def _cgroup_limits() -> list[int]:
    limits = []
    for path in _CGROUP_LIMITS:
        try:
            limits.append(int(Path(path).read_text().strip()))
        except (OSError, ValueError):  # absent, or "max"
            pass
    return limits


def parse_memory(text: str | int) -> int:
    """Bytes from `4GiB`, `4G`, `4GB`, `512MiB`, `512M` (all powers of 1024) or a plain number of bytes."""
    match = _MEMORY_SIZE.fullmatch(str(text))
    if match is None or float(match.group(1)) <= 0:
        raise InputError(f"--max-memory: {text!r} is not a positive size (e.g. 4GiB, 512MiB, or bytes)")
    return int(float(match.group(1)) * 1024 ** " kmgt".index(match.group(2).lower() or " "))


def block_entries(max_memory: int | None, bytes_per_entry: int, num_cols: int) -> int:
    """How many stored entries one row block may hold: what the budget leaves above this process's resident memory,
    over the step's bytes per entry. Never fewer than `num_cols`, so that a block's O(columns) set-up never costs
    more than its own entries and the time stays linear."""
    budget = default_max_memory() if max_memory is None else max_memory
    return max((budget - _resident_bytes()) // bytes_per_entry, num_cols, 1)


def _resident_bytes() -> int:
    try:  # Linux; elsewhere the whole budget goes to the blocks
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def row_blocks(entries_per_row: np.ndarray, max_entries: int) -> list[tuple[int, int]]:
    """Consecutive [start, stop) row ranges covering every row, each of at most `max_entries` entries (a row that
    alone holds more is a block of its own)."""
    ends = np.cumsum(entries_per_row)
    bounds = [0]
    while bounds[-1] < len(entries_per_row):
        start = bounds[-1]
        limit = (ends[start - 1] if start else 0) + max_entries
        bounds.append(max(int(np.searchsorted(ends, limit, side="right")), start + 1))
    return list(zip(bounds[:-1], bounds[1:])) or [(0, 0)]


class FlatSequences(Sequence[np.ndarray]):
    """Users' sequences as one flat item array and each user's length; `sequences[u]` is a view. A list of one
    array per user costs about 120 bytes of object overhead per user (1.6M users: 180 MiB) on top of the items."""

    def __init__(self, items: np.ndarray, lengths: np.ndarray):
        self.items, self.lengths = items, lengths
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])

    @classmethod
    def from_arrays(cls, sequences: Sequence[np.ndarray]) -> "FlatSequences":
        """One array per user (any integer dtype) flattened to int64."""
        lengths = np.fromiter((len(seq) for seq in sequences), dtype=np.int64, count=len(sequences))
        items = np.concatenate([np.zeros(0, dtype=np.int64), *(np.asarray(seq, dtype=np.int64) for seq in sequences)])
        return cls(items, lengths)

    def __len__(self) -> int:
        return self.lengths.size

    def __getitem__(self, user: int) -> np.ndarray:
        user = range(len(self))[operator.index(user)]  # IndexError past either end, like a list
        return self.items[self.offsets[user]:self.offsets[user + 1]]


def training_prefixes(sequences: Sequence[np.ndarray], holdout: int = HOLDOUT) -> tuple[np.ndarray, np.ndarray]:
    """The items of every user's training prefix, flattened, with the index of the user each came from."""
    if not isinstance(sequences, FlatSequences):
        sequences = FlatSequences.from_arrays(sequences)
    flat, lengths = sequences.items, sequences.lengths
    # the last `holdout` positions of each user are held out: one mask and no per-position index arrays
    in_prefix = np.ones(flat.size, dtype=bool)
    ends = sequences.offsets[1:]
    for back in range(1, holdout + 1):
        in_prefix[(ends - back)[lengths >= back]] = False
    owner = np.repeat(np.arange(lengths.size, dtype=np.int32 if lengths.size < 2**31 else np.int64), lengths)
    return flat[in_prefix], owner[in_prefix]


def training_popularity(sequences: Sequence[np.ndarray], num_items: int, holdout: int = HOLDOUT) -> np.ndarray:
    items, _ = training_prefixes(sequences, holdout)
    return np.bincount(items, minlength=num_items + 1).astype(np.int64)


def build_cooccurrence(sequences: Sequence[np.ndarray], num_items: int, window: int | None = None,
                       holdout: int = HOLDOUT, max_memory: int | None = None) -> sp.csr_matrix:
    """Symmetric (N+1, N+1) int32 CSR of pair counts within each training prefix, zero diagonal.

    Entry (a, b) counts the position pairs holding a and b in the same prefix; with `window`, only pairs at most
    `window` positions apart. The matrix is the same whatever `max_memory` (bytes), which only sizes the row blocks
    it is built in (`cooccurrence_blocks`).
    """
    blocks = list(cooccurrence_blocks(sequences, num_items, window, holdout, max_memory))
    counts = sp.vstack(blocks, format="csr", dtype=np.int32) if len(blocks) > 1 else blocks[0]
    counts.has_sorted_indices = True  # every block's are
    return counts


def cooccurrence_blocks(sequences: Sequence[np.ndarray], num_items: int, window: int | None = None,
                        holdout: int = HOLDOUT, max_memory: int | None = None) -> Iterator[sp.csr_matrix]:
    """`build_cooccurrence`'s rows, top to bottom, as int32 CSR blocks of shape (rows, N+1) with sorted indices,
    each sized so that forming it stays within `max_memory` bytes (default: `default_max_memory()`)."""
    if window is not None and window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    items, owner = training_prefixes(sequences, holdout)
    size = num_items + 1
    longest = int(np.bincount(owner).max()) if owner.size else 0
    if window is not None and window >= longest - 1:
        window = None  # no pair lies farther apart: the cost depends on the data, not on the window value
    if window is None:
        # users x items incidence B: rows a..b of B^T B count every pair of positions in the same user.
        incidence = sp.csr_matrix((np.ones(items.size, dtype=np.int32), (owner, items)), shape=(len(sequences), size))
        del items, owner
        transposed = incidence.T.tocsr()
        # A row's entries are at most the item slots of the users it occurs in, and at most the catalogue.
        bound = np.minimum(transposed.sign() @ np.diff(incidence.indptr).astype(np.int64), size)
        per_block = block_entries(max_memory, _PRODUCT_BYTES_PER_ENTRY, size)
        for start, stop in row_blocks(bound, per_block):
            yield _without_diagonal(transposed[start:stop] @ incidence, start)
        return
    # Windowed: the positions of a block's items, in item order, each paired with its neighbours up to `window`
    # places away in the same user.
    by_item = np.argsort(items, kind="stable")
    starts = np.searchsorted(items[by_item], np.arange(size + 1))
    per_block = block_entries(max_memory, _PAIR_BYTES_PER_ENTRY, size)
    for start, stop in row_blocks(np.diff(starts) * 2 * window, per_block):
        positions = by_item[starts[start]:starts[stop]]
        rows, cols = [], []
        for offset in (*range(1, window + 1), *range(-window, 0)):  # vectorised over the block's positions
            partner = positions + offset
            valid = (partner >= 0) & (partner < items.size)
            valid[valid] = owner[partner[valid]] == owner[positions[valid]]
            rows.append(items[positions[valid]] - start)
            cols.append(items[partner[valid]])
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        off_diagonal = rows + start != cols
        block = sp.csr_matrix((np.ones(off_diagonal.sum(), dtype=np.int32), (rows[off_diagonal], cols[off_diagonal])),
                              shape=(stop - start, size))
        block.sum_duplicates()  # sorts the indices too
        yield block


def _without_diagonal(block: sp.csr_matrix, start: int) -> sp.csr_matrix:
    """Rows `start`.. of the full product with their diagonal entries dropped, indices sorted."""
    rows = np.repeat(np.arange(start, start + block.shape[0]), np.diff(block.indptr))
    block.data[block.indices == rows] = 0  # counts are positive: the zeros are exactly the diagonal
    del rows
    block.eliminate_zeros()
    block.sort_indices()
    return block


class SpilledRows:
    """A CSR matrix appended row block by row block to two scratch files in `folder` (column indices, counts), with
    its row pointers and row sums in memory: `prepare` scores and saves it without ever holding it whole."""

    def __init__(self, folder: str | os.PathLike, num_cols: int):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.num_cols, self.dtype = num_cols, np.dtype(np.int32)  # counts, as `cooccurrence_blocks` yields them
        self.index_dtype = np.dtype(np.int32 if num_cols <= np.iinfo(np.int32).max else np.int64)
        self._indptr, self._sums = [np.zeros(1, dtype=np.int64)], []
        for name in ("indices", "data"):
            (self.folder / name).write_bytes(b"")

    def append(self, block: sp.csr_matrix) -> None:
        with open(self.folder / "indices", "ab") as handle:
            block.indices.astype(self.index_dtype, copy=False).tofile(handle)
        with open(self.folder / "data", "ab") as handle:
            block.data.astype(self.dtype, copy=False).tofile(handle)
        self._indptr.append(block.indptr[1:].astype(np.int64) + self._indptr[-1][-1])
        self._sums.append(_integer_row_sums(block))

    @property
    def indptr(self) -> np.ndarray:
        return np.concatenate(self._indptr)

    @property
    def shape(self) -> tuple[int, int]:
        return sum(part.size for part in self._indptr) - 1, self.num_cols

    def row_sums(self) -> np.ndarray:
        return np.concatenate(self._sums) if self._sums else np.zeros(0, dtype=np.int64)

    def blocks(self, max_entries: int) -> Iterator[tuple[int, sp.csr_matrix]]:
        """(first row, rows) read back in blocks of at most `max_entries` entries (or one longer row)."""
        indptr = self.indptr
        for start, stop in row_blocks(np.diff(indptr), max_entries):
            first, count = int(indptr[start]), int(indptr[stop] - indptr[start])
            yield start, sp.csr_matrix((self._read("data", self.dtype, first, count),
                                        self._read("indices", self.index_dtype, first, count),
                                        indptr[start:stop + 1] - first), shape=(stop - start, self.num_cols))

    def _read(self, name: str, dtype: np.dtype, first: int, count: int) -> np.ndarray:
        return np.fromfile(self.folder / name, dtype=dtype, count=count, offset=first * dtype.itemsize)

    def save_npz(self, path: str | os.PathLike) -> None:
        """The arrays `scipy.sparse.save_npz` writes for this CSR matrix (compressed, at `_DEFLATE_LEVEL`), streamed
        from the scratch files; `scipy.sparse.load_npz` reads it back."""
        indptr = self.indptr
        index_dtype = np.dtype(np.int64 if indptr[-1] > np.iinfo(np.int32).max else self.index_dtype)
        with zipfile.ZipFile(path, mode="w", compression=zipfile.ZIP_DEFLATED, compresslevel=_DEFLATE_LEVEL,
                             allowZip64=True) as archive:
            self._write_member(archive, "indices", index_dtype, int(indptr[-1]))
            self._write_array(archive, "indptr", indptr.astype(index_dtype))
            self._write_array(archive, "format", np.array(b"csr"))
            self._write_array(archive, "shape", np.array(self.shape))
            self._write_member(archive, "data", self.dtype, int(indptr[-1]))

    @staticmethod
    def _write_array(archive: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
        with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array(member, array, allow_pickle=False)

    def _write_member(self, archive: zipfile.ZipFile, name: str, dtype: np.dtype, count: int) -> None:
        """A 1-d array of `count` values from the scratch file `name`, a chunk at a time."""
        stored = self.index_dtype if name == "indices" else self.dtype
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (count,)}
        step = max(_CHUNK_BYTES // stored.itemsize, 1)
        with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, header)
            for first in range(0, count, step):
                member.write(self._read(name, stored, first, min(step, count - first)).astype(dtype).tobytes())


def row_sums(cooc: sp.csr_matrix | SpilledRows) -> np.ndarray:
    """Every row's sum, of an in-memory matrix or of spilled rows."""
    if isinstance(cooc, SpilledRows):
        return cooc.row_sums()
    if np.issubdtype(cooc.dtype, np.integer):
        return _integer_row_sums(cooc)
    return np.asarray(cooc.sum(axis=1)).ravel()


def _integer_row_sums(matrix: sp.csr_matrix) -> np.ndarray:
    """Row sums of integer counts, int64, as segment sums of the stored values: scipy's `sum(axis=1)` first copies
    the whole matrix to int64 and multiplies it by a vector of ones (at 100k items, 2.4 of prepare's 30 CPU seconds).
    The values are widened a chunk of rows at a time: `reduceat` widening them itself (its dtype argument) is about
    60 times slower than on a widened copy, and a copy of the whole matrix would add 8 bytes per entry."""
    lengths = np.diff(matrix.indptr)
    sums = np.zeros(matrix.shape[0], dtype=np.int64)
    for start, stop in row_blocks(lengths, _CHUNK_BYTES // 8):
        nonempty = np.flatnonzero(lengths[start:stop]) + start
        if nonempty.size:
            first = matrix.indptr[start]
            values = matrix.data[first:matrix.indptr[stop]].astype(np.int64)
            sums[nonempty] = np.add.reduceat(values, matrix.indptr[nonempty] - first)
    return sums


def stored_row_blocks(cooc: sp.csr_matrix | SpilledRows, max_entries: int) -> Iterator[tuple[int, sp.csr_matrix]]:
    """(first row, rows) of an in-memory CSR matrix or of spilled rows, top to bottom, in blocks of at most
    `max_entries` stored entries (or one longer row)."""
    if isinstance(cooc, SpilledRows):
        yield from cooc.blocks(max_entries)
        return
    for start, stop in row_blocks(np.diff(cooc.indptr), max_entries):
        yield start, cooc[start:stop]
