"""One reader per source format, all returning the same raw tables (`RawInteractions`, `RawItems`).

Review dumps in JSON lines (Amazon 2023, Amazon 2014/2018, Yelp) differ only in field names, so they share one
reader driven by a `ReviewSchema`; the delimited and whole-document formats have a small reader each.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError
from .sources import open_binary, load_json_document, parse_record, read_lines, require
from .text import TITLE_KEY

# Fields that readers of generic item tables rename to the title, which the item text puts first.
TITLE_ALIASES = ("title", "movie_title", "name", "item_name", "product_title")


@dataclass
class RawInteractions:
    """Interactions in input row order; `lines[k]` is the line of row k (None for whole-document formats)."""

    path: Path
    users: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    timestamps: list[float] | None = None
    ratings: list[float] | None = None
    lines: list[int] | None = None

    def where(self, row: int) -> str:
        place = f"line {self.lines[row]}" if self.lines is not None else f"user {self.users[row]!r}"
        return f"{self.path}, {place}"


@dataclass
class RawItems:
    """Item attributes by source id, in file order (the first record of a repeated id wins)."""

    path: Path
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)


def _number(value: Any, path: Path, number: int, key: str, parse: Callable[[Any], float] = float) -> float:
    try:
        return float(parse(value))
    except (TypeError, ValueError):
        raise InputError(f"{path}, line {number}: field {key!r} is not a valid number or time: {value!r}") from None


def _title_first(fields: dict[str, Any]) -> dict[str, Any]:
    alias = next((key for key in TITLE_ALIASES if key in fields), None)
    if alias is None or alias == TITLE_KEY:
        return fields
    return {(TITLE_KEY if key == alias else key): value for key, value in fields.items()}


# ----------------------------------------------------------------------------------------------- JSON-lines reviews
def _yelp_time(value: str) -> float:
    return datetime.fromisoformat(value).replace(tzinfo=timezone.utc).timestamp()


@dataclass(frozen=True)
class ReviewSchema:
    user: str
    item: str
    rating: str
    timestamp: str
    meta_id: str
    text_fields: tuple[tuple[str, str], ...]  # (field in the meta file, attribute name), title first
    parse_time: Callable[[Any], float] = float
    python_literals: bool = False  # the 2014 Amazon dumps are python dict literals, not JSON


REVIEW_SCHEMAS = {
    "amazon2023": ReviewSchema(
        "user_id", "parent_asin", "rating", "timestamp", "parent_asin",
        (("title", "title"), ("store", "store"), ("main_category", "main category"), ("categories", "categories"),
         ("features", "features"), ("description", "description"), ("details", "details"), ("price", "price")),
    ),
    "amazon2018": ReviewSchema(
        "reviewerID", "asin", "overall", "unixReviewTime", "asin",
        (("title", "title"), ("brand", "brand"), ("categories", "categories"), ("category", "categories"),
         ("feature", "features"), ("description", "description"), ("price", "price")),
        python_literals=True,
    ),
    "yelp": ReviewSchema(
        "user_id", "business_id", "stars", "date", "business_id",
        (("name", "title"), ("categories", "categories"), ("city", "city"), ("state", "state")),
        parse_time=_yelp_time,
    ),
}


def _read_reviews(schema: ReviewSchema, path: Path, show_progress: bool) -> RawInteractions:
    raw = RawInteractions(path, timestamps=[], ratings=[], lines=[])
    for number, line in read_lines(path, show_progress=show_progress):
        record = parse_record(path, number, line, schema.python_literals)
        raw.users.append(str(require(record, schema.user, path, number)))
        raw.items.append(str(require(record, schema.item, path, number)))
        raw.ratings.append(_number(require(record, schema.rating, path, number), path, number, schema.rating))
        raw.timestamps.append(_number(require(record, schema.timestamp, path, number), path, number,
                                      schema.timestamp, schema.parse_time))
        raw.lines.append(number)
    return raw


def _read_review_meta(schema: ReviewSchema, path: Path, show_progress: bool) -> RawItems:
    items = RawItems(path)
    for number, line in read_lines(path, show_progress=show_progress):
        record = parse_record(path, number, line, schema.python_literals)
        item_id = str(require(record, schema.meta_id, path, number))
        fields = {name: record[key] for key, name in schema.text_fields if record.get(key) not in (None, "", [])}
        items.fields.setdefault(item_id, fields)
    return items


# ------------------------------------------------------------------------------------------------------- MovieLens
MOVIELENS_100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)


def _split(path: Path, number: int, line: str, separator: str, expected: int) -> list[str]:
    parts = line.split(separator)
    if len(parts) != expected:
        raise InputError(f"{path}, line {number}: expected {expected} fields separated by {separator!r}, "
                         f"found {len(parts)}")
    return parts


def _read_movielens_ratings(path: Path, show_progress: bool) -> RawInteractions:
    """u.data (tab-separated) or ratings.dat (`::`-separated): user, item, rating, timestamp."""
    raw = RawInteractions(path, timestamps=[], ratings=[], lines=[])
    separator = None
    for number, line in read_lines(path, show_progress=show_progress):
        separator = separator or ("::" if "::" in line else "\t")
        user, item, rating, timestamp = _split(path, number, line.strip(), separator, 4)
        raw.users.append(user)
        raw.items.append(item)
        raw.ratings.append(_number(rating, path, number, "rating"))
        raw.timestamps.append(_number(timestamp, path, number, "timestamp"))
        raw.lines.append(number)
    return raw


def _read_movielens_movies(path: Path, show_progress: bool) -> RawItems:
    """u.item (`|`, 24 fields with genre flags) or movies.dat (`::`, id, title, `|`-joined genres); latin-1."""
    items = RawItems(path)
    for number, line in read_lines(path, encoding="latin-1", show_progress=show_progress):
        if "::" in line:
            item_id, title, genres = _split(path, number, line, "::", 3)
            fields = {"title": title, "genres": genres.split("|")}
        else:
            parts = _split(path, number, line, "|", 5 + len(MOVIELENS_100K_GENRES))
            item_id, title, release = parts[:3]
            genres = [name for name, flag in zip(MOVIELENS_100K_GENRES, parts[5:]) if flag == "1"]
            fields = {"title": title, "genres": genres, "release date": release}
        items.fields.setdefault(item_id, fields)
    return items


# -------------------------------------------------------------------------------------------- RecBole atomic files
def _recbole_rows(path: Path, show_progress: bool):
    """(line number, {column: value}) for a typed-header file such as `user_id:token<TAB>item_id:token`."""
    header = None
    for number, line in read_lines(path, show_progress=show_progress):
        if header is None:
            header = [column.split(":")[0] for column in line.split("\t")]
            continue
        yield number, dict(zip(header, _split(path, number, line, "\t", len(header))))


def _read_recbole_inter(path: Path, show_progress: bool) -> RawInteractions:
    rows = list(_recbole_rows(path, show_progress))
    for column in ("user_id", "item_id"):
        if rows and column not in rows[0][1]:
            raise InputError(f"{path}, line 1: header has no column {column!r}")
    raw = RawInteractions(path, lines=[number for number, _ in rows])
    raw.users = [row["user_id"] for _, row in rows]
    raw.items = [row["item_id"] for _, row in rows]
    if rows and "timestamp" in rows[0][1]:
        raw.timestamps = [_number(row["timestamp"], path, number, "timestamp") for number, row in rows]
    if rows and "rating" in rows[0][1]:
        raw.ratings = [_number(row["rating"], path, number, "rating") for number, row in rows]
    return raw


def _read_recbole_items(path: Path, show_progress: bool) -> RawItems:
    items = RawItems(path)
    for number, row in _recbole_rows(path, show_progress):
        item_id = require(row, "item_id", path, number)
        items.fields.setdefault(item_id, _title_first({k: v for k, v in row.items() if k != "item_id"}))
    return items


# ------------------------------------------------------------------------------------------------------------- CSV
USER_COLUMNS, ITEM_COLUMNS, TIME_COLUMNS = ("user", "user_id"), ("item", "item_id"), ("timestamp", "time")


def _csv_rows(path: Path):
    """(line number, {column: value}) with a header row; quoted fields may span lines."""
    handle = io.TextIOWrapper(open_binary(path), encoding="utf-8", newline="")
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None:
                return
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    raise InputError(f"{path}, line {reader.line_num}: expected {len(header)} columns "
                                     f"({', '.join(header)}), found {len(row)}")
                yield reader.line_num, dict(zip(header, row))
        except UnicodeDecodeError as err:
            raise InputError(f"{path}, line {reader.line_num + 1}: bytes that are not valid utf-8 "
                             f"({err.reason})") from None


def _column(header: dict, names: tuple[str, ...], path: Path, required: bool = True) -> str | None:
    found = next((name for name in names if name in header), None)
    if found is None and required:
        raise InputError(f"{path}, line 1: header needs a column named {' or '.join(map(repr, names))}")
    return found


def _read_csv_inter(path: Path, show_progress: bool) -> RawInteractions:
    rows = list(_csv_rows(path))
    raw = RawInteractions(path, lines=[number for number, _ in rows])
    if not rows:
        return raw
    user, item = _column(rows[0][1], USER_COLUMNS, path), _column(rows[0][1], ITEM_COLUMNS, path)
    time, rating = _column(rows[0][1], TIME_COLUMNS, path, False), _column(rows[0][1], ("rating",), path, False)
    raw.users = [require(row, user, path, number) for number, row in rows]
    raw.items = [require(row, item, path, number) for number, row in rows]
    if time:
        raw.timestamps = [_number(row[time], path, number, time) for number, row in rows]
    if rating:
        raw.ratings = [_number(row[rating], path, number, rating) for number, row in rows]
    return raw


def _read_csv_items(path: Path, show_progress: bool) -> RawItems:
    items = RawItems(path)
    key = None
    for number, row in _csv_rows(path):
        key = key or _column(row, ITEM_COLUMNS, path)
        item_id = require(row, key, path, number)
        items.fields.setdefault(item_id, _title_first({k: v for k, v in row.items() if k != key}))
    return items


# -------------------------------------------------------------------------------------------- {user: [items]} JSON
def _read_seqjson_inter(path: Path, show_progress: bool) -> RawInteractions:
    document = load_json_document(path)
    if not isinstance(document, dict):
        raise InputError(f"{path}: expected a JSON object {{user: [item ids]}}, got {type(document).__name__}")
    raw = RawInteractions(path)
    for user, sequence in document.items():
        # bool is an int subclass, but true / false are no item ids
        if not isinstance(sequence, list) or not all(isinstance(item, (int, str)) and not isinstance(item, bool)
                                                      for item in sequence):
            raise InputError(f"{path}, user {user!r}: expected a list of item ids (integers or strings)")
        raw.users.extend([user] * len(sequence))
        raw.items.extend(map(str, sequence))
    return raw


def _read_seqjson_items(path: Path, show_progress: bool) -> RawItems:
    document = load_json_document(path)
    if not isinstance(document, dict):
        raise InputError(f"{path}: expected a JSON object {{item id: {{attribute: value}}}}")
    items = RawItems(path)
    for item_id, fields in document.items():
        if not isinstance(fields, dict):
            raise InputError(f"{path}, item {item_id!r}: expected an object of attributes, got "
                             f"{type(fields).__name__}")
        items.fields[item_id] = _title_first(fields)
    return items


# ---------------------------------------------------------------------- the reference's inter.txt + item_info.jsonline
def _read_reaemb_inter(path: Path, show_progress: bool) -> RawInteractions:
    raw = RawInteractions(path, lines=[])
    for number, line in read_lines(path, show_progress=show_progress):
        parts = line.split()
        if len(parts) != 2:
            raise InputError(f"{path}, line {number}: expected 'user item', found {len(parts)} fields")
        raw.users.append(parts[0])
        raw.items.append(parts[1])
        raw.lines.append(number)
    return raw


def _parse_reference_prompt(text: str) -> dict[str, str]:
    """`<instruction>\\n key is value; key is value` back into attributes (the instruction line is dropped)."""
    body = text.split("\n", 1)[-1]
    fields: dict[str, str] = {}
    for part in body.split(";"):
        key, separator, value = part.strip().partition(" is ")
        if separator:
            fields.setdefault(key.strip(), value.strip())
        elif key:
            fields["text"] = f"{fields.get('text', '')} {key}".strip()
    return fields


def _read_reaemb_items(path: Path, show_progress: bool) -> RawItems:
    items = RawItems(path)
    for number, line in read_lines(path, show_progress=show_progress):
        record = parse_record(path, number, line)
        item_id = str(require(record, "item_id", path, number))
        items.fields.setdefault(item_id, _parse_reference_prompt(str(require(record, "input", path, number))))
    return items


# ----------------------------------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class SourceFormat:
    read_interactions: Callable[[Path, bool], RawInteractions]
    read_items: Callable[[Path, bool], RawItems]
    description: str


def _review_format(name: str, description: str) -> SourceFormat:
    schema = REVIEW_SCHEMAS[name]
    return SourceFormat(lambda path, progress: _read_reviews(schema, path, progress),
                        lambda path, progress: _read_review_meta(schema, path, progress), description)


FORMATS: dict[str, SourceFormat] = {
    "amazon2023": _review_format("amazon2023", "Amazon Reviews 2023: reviews JSONL + meta JSONL"),
    "amazon2018": _review_format("amazon2018", "Amazon 2014/2018: reviews + meta, JSON or python-literal lines"),
    "yelp": _review_format("yelp", "Yelp Open Dataset: review.json + business.json"),
    "movielens": SourceFormat(_read_movielens_ratings, _read_movielens_movies,
                              "MovieLens: u.data + u.item, or ratings.dat + movies.dat"),
    "recbole": SourceFormat(_read_recbole_inter, _read_recbole_items, "RecBole atomic files: .inter + .item"),
    "seqjson": SourceFormat(_read_seqjson_inter, _read_seqjson_items, "{user: [item ids]} JSON + item JSON"),
    "reaemb": SourceFormat(_read_reaemb_inter, _read_reaemb_items,
                           "reference ReaEmb: inter.txt + item_info.jsonline"),
    "csv": SourceFormat(_read_csv_inter, _read_csv_items, "CSV: user,item[,timestamp][,rating] + item CSV"),
}


def get_format(name: str) -> SourceFormat:
    if name not in FORMATS:
        raise InputError(f"unknown format {name!r}; choose one of: {', '.join(FORMATS)}")
    return FORMATS[name]
