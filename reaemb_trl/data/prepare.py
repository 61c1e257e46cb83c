"""Raw source -> prepared-dataset folder: one normalisation path (filters, id mapping, text) for every format."""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..errors import InputError
from ..io_utils import atomic_output_dir, ensure_replaceable, sha256_file, sha256_json, write_json
from .cooccurrence import HOLDOUT, build_cooccurrence
from .readers import RawInteractions, RawItems, get_format
from .sources import existing_file
from .text import DEFAULT_MAX_VALUE_CHARS, item_attributes, join_attributes

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"
# The paper's groups: tail items have fewer than 20 interactions, short users fewer than 10.
TAIL_ITEM_THRESHOLD = 20
SHORT_USER_THRESHOLD = 10
FOLDER_FORMAT = "reaemb_trl.prepared/1"


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
    show_progress: bool = field(default=True, metadata={"help": "Show progress bars while reading."})

    def __post_init__(self):
        # Checked before any file is read.
        if self.cooc_window is not None and self.cooc_window < 1:
            raise InputError(f"--cooc-window must be at least 1 (or left out for whole prefixes), "
                             f"got {self.cooc_window}")
        for name in ("min_user_interactions", "min_item_interactions", "max_value_chars"):
            if getattr(self, name) < 0:
                raise InputError(f"--{name.replace('_', '-')} must not be negative, got {getattr(self, name)}")


@dataclass
class _Table:
    """Interactions as integer codes, in input row order (codes number users/items by first appearance)."""

    users: np.ndarray
    items: np.ndarray
    order_key: np.ndarray  # timestamp, or row number when the source has none
    ratings: np.ndarray | None
    user_names: list[str]
    item_names: list[str]


def _codes(names: list[str]) -> tuple[np.ndarray, list[str]]:
    index: dict[str, int] = {}
    codes = np.fromiter((index.setdefault(name, len(index)) for name in names), dtype=np.int64, count=len(names))
    return codes, list(index)


def _to_table(raw: RawInteractions) -> _Table:
    users, user_names = _codes(raw.users)
    items, item_names = _codes(raw.items)
    rows = np.arange(len(raw.users), dtype=np.float64)
    order_key = np.asarray(raw.timestamps, dtype=np.float64) if raw.timestamps is not None else rows
    ratings = np.asarray(raw.ratings, dtype=np.float64) if raw.ratings is not None else None
    return _Table(users, items, order_key, ratings, user_names, item_names)


def _filter(table: _Table, raw: RawInteractions, raw_items: RawItems | None, options: PrepareOptions,
            counts: dict) -> np.ndarray:
    """Row indices that survive rating filter, unknown-item check, de-duplication and k-core, in time order."""
    keep = np.ones(table.users.size, dtype=bool)
    if options.min_rating is not None:
        if table.ratings is None:
            raise InputError(f"{raw.path}: --min-rating given but this input has no ratings")
        keep &= table.ratings >= options.min_rating
        counts["removed_by_min_rating"] = int((~keep).sum())

    if raw_items is not None:
        known = np.fromiter((name in raw_items.fields for name in table.item_names), dtype=bool,
                            count=len(table.item_names))
        unknown = keep & ~known[table.items]
        if unknown.any() and not options.drop_unknown_items:
            row = int(np.flatnonzero(unknown)[0])
            raise InputError(f"{raw.where(row)}: item {raw.items[row]!r} is not in the item file {raw_items.path} "
                             f"({int(unknown.sum())} interactions name unknown items; pass --drop-unknown-items "
                             f"to drop them)")
        keep &= ~unknown
        counts["dropped_unknown_items"] = int(unknown.sum())

    # Time order per user, ties broken by input row order (lexsort is stable on the last key's ties).
    rows = np.flatnonzero(keep)
    rows = rows[np.lexsort((rows, table.order_key[rows], table.users[rows]))]
    pair = table.users[rows] * len(table.item_names) + table.items[rows]
    _, first = np.unique(pair, return_index=True)
    counts["duplicates_removed"] = int(rows.size - first.size)
    rows = rows[np.sort(first)]

    removed_before_kcore = rows.size
    while options.min_user_interactions > 1 or options.min_item_interactions > 1:
        user_count = np.bincount(table.users[rows], minlength=len(table.user_names))
        item_count = np.bincount(table.items[rows], minlength=len(table.item_names))
        dense = ((user_count[table.users[rows]] >= options.min_user_interactions)
                 & (item_count[table.items[rows]] >= options.min_item_interactions))
        if dense.all():
            break
        rows = rows[dense]
    counts["removed_by_kcore"] = int(removed_before_kcore - rows.size)
    if not rows.size:
        raise InputError(f"{raw.path}: every user was filtered out (min rating {options.min_rating}, k-core "
                         f"users >= {options.min_user_interactions}, items >= {options.min_item_interactions}, "
                         f"{counts.get('dropped_unknown_items', 0)} unknown-item interactions dropped)")
    return rows


def _statistics(sequences: list[np.ndarray], num_items: int) -> dict:
    lengths = np.array([len(seq) for seq in sequences])
    popularity = np.bincount(np.concatenate(sequences), minlength=num_items + 1)[1:]
    interactions = int(lengths.sum())
    return {
        "users": len(sequences),
        "items": num_items,
        "interactions": interactions,
        "sparsity": 1.0 - interactions / (len(sequences) * num_items),
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


def _write_interactions(path: Path, sequences: list[np.ndarray]) -> None:
    users = np.repeat(np.arange(1, len(sequences) + 1), [len(seq) for seq in sequences])
    np.savetxt(path, np.column_stack([users, np.concatenate(sequences)]), fmt="%d", delimiter=" ")


def _describe_input(path: Path | None) -> dict | None:
    if path is None:
        return None
    return {"path": str(path.resolve()), "bytes": path.stat().st_size, "sha256": sha256_file(path)}


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
    output = Path(output)
    # before the (long) reading
    ensure_replaceable(output, "dataset.json", [p for p in (inter_path, items_path) if p is not None], overwrite)

    raw = source.read_interactions(inter_path, opts.show_progress)
    if not raw.users:
        raise InputError(f"{inter_path}: empty input (no interactions)")
    raw_items = source.read_items(items_path, opts.show_progress) if items_path is not None else None
    if raw_items is not None and not raw_items.fields:
        raise InputError(f"{items_path}: empty input (no items)")
    if raw_items is None:
        warnings.warn(f"no item file given for {inter_path}: every item gets an empty text (co-occurrence and "
                      f"ID-only models still work)", stacklevel=2)

    counts: dict = {"raw_interactions": len(raw.users)}
    table = _to_table(raw)
    rows = _filter(table, raw, raw_items, opts, counts)

    # Users keep their order of first appearance; items follow the item file when there is one.
    kept_items = np.unique(table.items[rows])
    if raw_items is not None:
        file_rank = {name: rank for rank, name in enumerate(raw_items.fields)}
        kept_items = kept_items[np.argsort([file_rank[table.item_names[code]] for code in kept_items], kind="stable")]
    new_item_id = np.zeros(len(table.item_names), dtype=np.int64)
    new_item_id[kept_items] = np.arange(1, kept_items.size + 1)
    row_users = table.users[rows]
    by_user = np.argsort(row_users, kind="stable")  # rows are already in time order within each user
    _, starts = np.unique(row_users[by_user], return_index=True)
    sequences = np.split(new_item_id[table.items[rows][by_user]], starts[1:])

    source_ids = [table.item_names[code] for code in kept_items]
    item_fields = [raw_items.fields[name] for name in source_ids] if raw_items else [{}] * len(source_ids)
    counts.update(_statistics(sequences, len(source_ids)))

    with atomic_output_dir(output, overwrite=overwrite) as tmp:
        counts["items_with_text"] = _write_items(tmp / "items.jsonl", source_ids, item_fields,
                                                  opts.max_value_chars)
        _write_interactions(tmp / "inter.txt", sequences)
        sp.save_npz(tmp / "cooccurrence.npz", build_cooccurrence(sequences, len(source_ids), opts.cooc_window))
        outputs = {name: sha256_file(tmp / name) for name in ("items.jsonl", "inter.txt", "cooccurrence.npz")}
        # The npz (a zip) carries write times, so the fingerprint rests on the text files and the window.
        fingerprint = sha256_json([outputs["items.jsonl"], outputs["inter.txt"], opts.cooc_window])
        parameters = {k: v for k, v in asdict(opts).items() if k != "show_progress"}
        write_json(tmp / "dataset.json", {
            "folder_format": FOLDER_FORMAT,
            "source_format": format,
            "counts": counts,
            "parameters": {**parameters, "holdout": HOLDOUT, "tail_item_threshold": TAIL_ITEM_THRESHOLD,
                           "short_user_threshold": SHORT_USER_THRESHOLD},
            "inputs": {"interactions": _describe_input(inter_path), "items": _describe_input(items_path)},
            "outputs": outputs,
            "sha256": fingerprint,
        })
    return output
