"""Raw source -> prepared-dataset folder: one normalisation path (filters, id mapping, text) for every format."""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io_utils import OutputGuard, atomic_output_dir, sha256_file, sha256_json, write_json
from ..validation import check_numbers
from .cooccurrence import (
    HOLDOUT,
    FlatSequences,
    SpilledRows,
    cooccurrence_blocks,
    default_max_memory,
    parse_memory,
    row_blocks,
)
from .readers import RawInteractions, RawItems, SourceFormat, get_format
from .reward_signal import reward_signal
from .sources import check_encoding, detect_encoding, existing_file
from .text import DEFAULT_MAX_VALUE_CHARS, item_attributes, join_attributes

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"
BUNDLED = "bundled"  # as an interactions or items path: the bundled sample's file (format seqjson)
# The paper's groups: tail items have fewer than 20 interactions, short users fewer than 10.
TAIL_ITEM_THRESHOLD = 20
SHORT_USER_THRESHOLD = 10
FOLDER_FORMAT = "reaemb_trl.prepared/1"
# dataset.json "filters": the rows each filter removed, in the order the filters apply.
FILTERS = ("min_rating", "unknown_items", "repeats", "min_user_interactions", "min_item_interactions")
_WRITE_ROWS = 1 << 18  # inter.txt lines formatted at once (about 20 MB of Python numbers and text)


def sample_dataset_files() -> tuple[Path, Path]:
    """The bundled Amazon Office 2014 sample: (`{user: [items]}` JSON, item JSON), for format `seqjson`."""
    return SAMPLE_DIR / "Office.inter.json", SAMPLE_DIR / "Office.item.json"


@dataclass
class PrepareOptions:
    min_rating: float | None = field(default=None, metadata={
        "help": "Keep interactions rated at least this (formats with ratings only)."})
    min_user_interactions: int = field(default=0, metadata={
        "help": "Iterative k-core: drop users with fewer interactions (0: off)."})
    min_item_interactions: int = field(default=0, metadata={
        "help": "Iterative k-core: drop items with fewer interactions (0: off)."})
    drop_unknown_items: bool = field(default=False, metadata={
        "help": "Drop (and count) interactions whose item is missing from the item file instead of failing."})
    cooc_window: int | None = field(default=None, metadata={
        "help": "Count co-occurrence only for pairs at most this many positions apart (default: whole prefix)."})
    max_value_chars: int = field(default=DEFAULT_MAX_VALUE_CHARS, metadata={
        "help": "Cut each attribute value in the item text to this many characters."})
    keep_repeats: bool | None = field(default=None, metadata={
        "help": "Keep repeated (user, item) visits in the sequences (co-occurrence never pairs an item with "
                "itself). Default: on for reaemb and seqjson, which are sequences already; off for the others."})
    encoding: str | None = field(default=None, metadata={
        "help": "Text encoding of the input files. Default: utf-8; MovieLens item files that are not utf-8 are "
                "read as latin-1 (MovieLens 100K and 1M)."})
    show_progress: bool = field(default=True, metadata={"help": "Show progress bars while reading."})
    max_memory: str | None = field(default=None, metadata={
        "help": "Memory the co-occurrence steps keep this process within, e.g. 4GiB or 512MiB: they work in row "
                "blocks sized by what is left of it (never under one block of as many entries as items); the "
                "result is the same whatever the value. Default: a quarter of the machine's memory. Reading the "
                "raw files is not bounded by it."})

    def __post_init__(self):
        # Checked before any file is read: types first (a recipe's `cooc_window: ten`), then ranges.
        check_numbers(self, "prepare options")
        if self.cooc_window is not None and self.cooc_window < 1:
            raise InputError(f"--cooc-window must be at least 1 (or left out for whole prefixes), "
                             f"got {self.cooc_window}")
        for name in ("min_user_interactions", "min_item_interactions", "max_value_chars"):
            if getattr(self, name) < 0:
                raise InputError(f"--{name.replace('_', '-')} must not be negative, got {getattr(self, name)}")
        if self.encoding is not None:
            check_encoding(self.encoding)
        if self.max_memory is not None:
            parse_memory(self.max_memory)

    def memory_budget(self) -> int:
        """`max_memory` in bytes, or the default."""
        return default_max_memory() if self.max_memory is None else parse_memory(self.max_memory)


@dataclass
class _Table:
    """Interactions as integer codes, in input row order (codes number users/items by first appearance): numpy views
    of the reader's columns, no copies."""

    users: np.ndarray  # intc
    items: np.ndarray  # intc
    timestamps: np.ndarray | None
    ratings: np.ndarray | None
    user_names: list[str]
    item_names: list[str]


def _to_table(raw: RawInteractions) -> _Table:
    def view(column, dtype):
        return None if column is None else np.frombuffer(column, dtype=dtype)

    return _Table(view(raw.user_codes, np.intc), view(raw.item_codes, np.intc), view(raw.time_column, np.float64),
                  view(raw.rating_column, np.float64), raw.user_names, raw.item_names)


def _filter(table: _Table, raw: RawInteractions, raw_items: RawItems | None, options: PrepareOptions,
            keep_repeats: bool, removed: dict) -> np.ndarray:
    """Row indices that survive rating filter, unknown-item check, de-duplication and k-core, grouped by user code
    (ascending) and in time order within each user; `removed[name]` counts the rows each of the FILTERS took out."""
    keep = np.ones(table.users.size, dtype=bool)
    if options.min_rating is not None:
        if table.ratings is None:
            raise InputError(f"{raw.path}: --min-rating given but this input has no ratings")
        keep &= table.ratings >= options.min_rating
        removed["min_rating"] = int((~keep).sum())

    if raw_items is not None:
        known = np.fromiter((name in raw_items.fields for name in table.item_names), dtype=bool,
                            count=len(table.item_names))
        unknown = keep & ~known[table.items]
        if unknown.any() and not options.drop_unknown_items:
            row = int(np.flatnonzero(unknown)[0])
            raise InputError(f"{raw.where(row)}: item {table.item_names[table.items[row]]!r} is not in the item "
                             f"file {raw_items.path} ({int(unknown.sum())} interactions name unknown items; pass "
                             f"--drop-unknown-items to drop them)")
        keep &= ~unknown
        removed["unknown_items"] = int(unknown.sum())

    # Time order per user, ties broken by input row order (lexsort sorts by the last key first). At catalogue scale
    # each temporary here is 80-160 MB, so each goes as soon as it has served.
    rows = np.flatnonzero(keep)
    del keep
    times = () if table.timestamps is None else (table.timestamps[rows],)
    order = np.lexsort((rows, *times, table.users[rows]))
    del times
    rows = rows[order]
    del order
    if not keep_repeats:  # the first visit of each (user, item) pair stays
        pair = table.users[rows].astype(np.int64)
        pair *= len(table.item_names)
        pair += table.items[rows]
        # np.unique(return_index=True) would hold a copy, a permutation and a sorted copy of `pair` at once
        order = np.argsort(pair, kind="stable")  # each pair's visits stay in time order
        pair = pair[order]
        first = order[np.concatenate([[True], pair[1:] != pair[:-1]])]
        del pair, order
        removed["repeats"] = int(rows.size - first.size)
        first.sort()
        rows = rows[first]

    while options.min_user_interactions > 1 or options.min_item_interactions > 1:
        user_count = np.bincount(table.users[rows], minlength=len(table.user_names))
        item_count = np.bincount(table.items[rows], minlength=len(table.item_names))
        user_ok = user_count[table.users[rows]] >= options.min_user_interactions
        item_ok = item_count[table.items[rows]] >= options.min_item_interactions
        if user_ok.all() and item_ok.all():
            break
        # a row that fails both counts for the user threshold
        removed["min_user_interactions"] += int((~user_ok).sum())
        removed["min_item_interactions"] += int((user_ok & ~item_ok).sum())
        rows = rows[user_ok & item_ok]
    if not rows.size:
        raise InputError(f"{raw.path}: every user was filtered out (min rating {options.min_rating}, k-core "
                         f"users >= {options.min_user_interactions}, items >= {options.min_item_interactions}, "
                         f"{removed['unknown_items']} unknown-item interactions dropped)")
    return rows


def _statistics(sequences: FlatSequences, num_items: int) -> dict:
    lengths, items = sequences.lengths, sequences.items
    popularity = np.bincount(items, minlength=num_items + 1)[1:]
    interactions = int(lengths.sum())
    # on distinct (user, item) pairs: with repeats kept, interactions can outnumber the cells of the matrix. One
    # key array sorted in place: np.unique would add a sorted copy and an index array of the same size.
    pairs = np.repeat(np.arange(len(sequences), dtype=np.int64), lengths)
    pairs *= num_items + 1
    pairs += items
    pairs.sort()
    distinct = int(pairs.size > 0) + int(np.count_nonzero(pairs[1:] != pairs[:-1]))
    del pairs
    return {
        "users": len(sequences),
        "items": num_items,
        "interactions": interactions,
        "sparsity": 1.0 - distinct / (len(sequences) * num_items),
        "mean_length": interactions / len(sequences),
        "tail_item_share": float((popularity < TAIL_ITEM_THRESHOLD).mean()),
        "short_user_share": float((lengths < SHORT_USER_THRESHOLD).mean()),
    }


def _write_items(path: Path, source_ids: list[str], fields: list[dict], max_value_chars: int) -> int:
    with_text = 0
    with open(path, "w", encoding="utf-8") as handle:
        for item_id, (source_id, attributes) in enumerate(zip(source_ids, fields), 1):
            text = join_attributes(item_attributes(attributes, max_value_chars))
            with_text += bool(text)
            record = {"item_id": item_id, "source_id": source_id, "text": text, "fields": attributes}
            handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    return with_text


def _write_interactions(path: Path, sequences: FlatSequences) -> None:
    """`user item` lines, users numbered from 1, a slice of users at a time: the two columns are never held whole (at
    20M interactions they would take 320 MB), and one %-format per slice is about 8 times faster than np.savetxt's
    one per line."""
    with open(path, "w", encoding="utf-8") as handle:
        for first, last in row_blocks(sequences.lengths, _WRITE_ROWS):
            users = np.repeat(np.arange(first + 1, last + 1), sequences.lengths[first:last])
            items = sequences.items[sequences.offsets[first]:sequences.offsets[last]]
            handle.write("%d %d\n" * users.size % tuple(np.column_stack([users, items]).ravel().tolist()))


def _describe_input(path: Path | None, encoding: str) -> dict | None:
    if path is None:
        return None
    return {"path": str(path.resolve()), "bytes": path.stat().st_size, "sha256": sha256_file(path),
            "encoding": encoding}


def file_encodings(source: SourceFormat, items_path: Path | None, encoding: str | None) -> tuple[str, str]:
    """(interactions, items) encodings: the one given, else utf-8, else the source's legacy encoding for an item
    file that does not decode as utf-8 (a utf-8 movies.dat read as latin-1 would turn "é" into "Ã©")."""
    if encoding is not None:
        return encoding, encoding
    if items_path is None or source.legacy_item_encoding is None:
        return "utf-8", "utf-8"
    return "utf-8", detect_encoding(items_path, source.legacy_item_encoding)


def prepare_dataset(format: str, interactions: str | os.PathLike, items: str | os.PathLike | None = None,
                    output: str | os.PathLike = "prepared", overwrite: bool = False, **options) -> Path:
    """Read a raw dataset in `format`, filter it and write the prepared folder `output` (atomically)."""
    source = get_format(format)
    known = {option.name for option in fields(PrepareOptions)}
    if set(options) - known:
        raise InputError(f"unknown prepare option(s) {sorted(set(options) - known)}; known: {sorted(known)}")
    opts = PrepareOptions(**options)
    inter_path = existing_file(interactions, "interactions")
    items_path = existing_file(items, "items") if items is not None else None
    # before the (long) reading; held (locked) until the folder is written
    guard = OutputGuard(output, marker="dataset.json", inputs=[inter_path, items_path], overwrite=overwrite)
    with guard:
        _prepare(format, source, opts, inter_path, items_path, guard)
    return Path(output)


def _prepare(format: str, source: SourceFormat, opts: PrepareOptions, inter_path: Path, items_path: Path | None,
             guard: OutputGuard) -> None:
    """Read, filter and write the prepared folder at `guard.path`."""
    keep_repeats = source.keeps_repeats if opts.keep_repeats is None else opts.keep_repeats
    inter_encoding, items_encoding = file_encodings(source, items_path, opts.encoding)

    raw = source.read_interactions(inter_path, inter_encoding, opts.show_progress)
    if not len(raw):
        raise InputError(f"{inter_path}: empty input (no interactions)")
    raw_items = source.read_items(items_path, items_encoding, opts.show_progress) if items_path is not None else None
    if raw_items is not None and not raw_items.fields:
        raise InputError(f"{items_path}: empty input (no items)")
    if raw_items is None:
        warnings.warn(f"no item file given for {inter_path}: every item gets an empty text (co-occurrence and "
                      f"ID-only models still work)", stacklevel=3)  # the caller of prepare_dataset

    counts: dict = {"raw_interactions": len(raw)}
    removed = dict.fromkeys(FILTERS, 0)
    table = _to_table(raw)
    rows = _filter(table, raw, raw_items, opts, keep_repeats, removed)

    # Users keep their order of first appearance (their codes, which `rows` is grouped by); items follow the item
    # file when there is one.
    kept_items = np.unique(table.items[rows])
    if raw_items is not None:
        file_rank = {name: rank for rank, name in enumerate(raw_items.fields)}
        kept_items = kept_items[np.argsort([file_rank[table.item_names[code]] for code in kept_items], kind="stable")]
        del file_rank
    new_item_id = np.zeros(len(table.item_names), dtype=np.intc)
    new_item_id[kept_items] = np.arange(1, kept_items.size + 1)
    user_lengths = np.bincount(table.users[rows], minlength=len(table.user_names))
    sequences = FlatSequences(new_item_id[table.items[rows]], user_lengths[user_lengths > 0])
    del new_item_id, user_lengths
    source_ids = [table.item_names[code] for code in kept_items]
    item_fields = [raw_items.fields[name] for name in source_ids] if raw_items else [{}] * len(source_ids)
    num_items = len(source_ids)

    del raw, raw_items, table, rows, kept_items  # the raw input is not needed any more: free it before the rest

    budget = opts.memory_budget()
    with atomic_output_dir(guard.path, overwrite=guard.replaces) as tmp:
        with_text = _write_items(tmp / "items.jsonl", source_ids, item_fields, opts.max_value_chars)
        del source_ids, item_fields  # before the statistics' temporaries, so that the two never add up
        counts.update(_statistics(sequences, num_items), items_with_text=with_text)
        _write_interactions(tmp / "inter.txt", sequences)
        # Row blocks go to scratch files as they are counted, so the whole matrix is never held in memory.
        with tempfile.TemporaryDirectory(prefix=".cooccurrence.", dir=tmp) as spill:
            cooccurrence = SpilledRows(spill, num_cols=num_items + 1)
            for block in cooccurrence_blocks(sequences, num_items, opts.cooc_window, max_memory=budget):
                cooccurrence.append(block)
            del sequences
            cooccurrence.save_npz(tmp / "cooccurrence.npz")
            signal = reward_signal(cooccurrence, max_memory=budget)
        outputs = {name: sha256_file(tmp / name) for name in ("items.jsonl", "inter.txt", "cooccurrence.npz")}
        # The npz (a zip) carries write times, so the fingerprint rests on the text files and the window.
        fingerprint = sha256_json([outputs["items.jsonl"], outputs["inter.txt"], opts.cooc_window])
        parameters = {k: v for k, v in asdict(opts).items() if k not in ("show_progress", "encoding", "max_memory")}
        write_json(tmp / "dataset.json", {
            "folder_format": FOLDER_FORMAT,
            "source_format": format,
            "counts": counts,
            "filters": removed,
            "parameters": {**parameters, "keep_repeats": keep_repeats, "holdout": HOLDOUT,
                           "tail_item_threshold": TAIL_ITEM_THRESHOLD, "short_user_threshold": SHORT_USER_THRESHOLD},
            "inputs": {"interactions": _describe_input(inter_path, inter_encoding),
                       "items": _describe_input(items_path, items_encoding)},
            "outputs": outputs,
            "reward_signal": signal,
            "sha256": fingerprint,
        })
