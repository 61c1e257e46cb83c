"""One reader per source format, all returning the same raw tables (`RawInteractions`, `RawItems`).

Review dumps in JSON lines (Amazon 2023, Amazon 2014/2018, Yelp) differ only in field names, so they share one
reader driven by a `ReviewSchema`; the delimited and whole-document formats have a small reader each.
"""

from __future__ import annotations

import csv
import functools
import math
import re
from array import array
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ..errors import InputError
from .sources import load_json_document, parse_record, read_lines, require, text_lines
from .text import TITLE_KEY

# Fields that readers of generic item tables rename to the title, which the item text puts first.
TITLE_ALIASES = ("title", "movie_title", "name", "item_name", "product_title")


class RawInteractions:
    """Interactions in input row order, in compact columns: a row's user and item are codes into `user_names` and
    `item_names` (the distinct ids, in order of first appearance); its time, rating and line number sit in typed
    arrays, None where the source has none (whole-document formats have no line numbers). Lists of strings and
    Python numbers took about 90 bytes a row (20M rows: 2 GB) and left the heap too fragmented to hand back after
    reading; these columns take 8 to 32 bytes a row."""

    def __init__(self, path: Path, timed: bool = False, rated: bool = False, numbered: bool = True):
        self.path = path
        self.user_names: list[str] = []
        self.item_names: list[str] = []
        self.user_codes, self.item_codes = array("i"), array("i")  # C int: numpy's intc
        self.time_column = array("d") if timed else None
        self.rating_column = array("d") if rated else None
        self.line_column = array("q") if numbered else None
        self._user_code: dict[str, int] = {}
        self._item_code: dict[str, int] = {}

    def add(self, user: str, item: str, line: int | None = None, rating: float | None = None,
            timestamp: float | None = None) -> None:
        """One row; `line`, `rating` and `timestamp` go to the columns this source has."""
        self.user_codes.append(_code(self._user_code, self.user_names, user))
        self.item_codes.append(_code(self._item_code, self.item_names, item))
        if self.line_column is not None:
            self.line_column.append(line)
        if self.rating_column is not None:
            self.rating_column.append(rating)
        if self.time_column is not None:
            self.time_column.append(timestamp)

    def __len__(self) -> int:
        return len(self.user_codes)

    @property
    def users(self) -> list[str]:
        """Each row's user id (built on access, for inspection)."""
        return [self.user_names[code] for code in self.user_codes]

    @property
    def items(self) -> list[str]:
        """Each row's item id (built on access, for inspection)."""
        return [self.item_names[code] for code in self.item_codes]

    @property
    def timestamps(self) -> list[float] | None:
        return None if self.time_column is None else self.time_column.tolist()

    def where(self, row: int) -> str:
        place = (f"line {self.line_column[row]}" if self.line_column is not None
                 else f"user {self.user_names[self.user_codes[row]]!r}")
        return f"{self.path}, {place}"


def _code(codes: dict[str, int], names: list[str], name: str) -> int:
    """`name`'s code in `codes`, a new one (the next in `names`) the first time it is seen."""
    code = codes.get(name)
    if code is None:
        code = codes[name] = len(names)
        names.append(name)
    return code


@dataclass
class RawItems:
    """Item attributes by source id, in file order (the first record of a repeated id wins)."""

    path: Path
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)


# ------------------------------------------------------------------------------------ ids that would mislead
# Ids are compared as text (after trimming surrounding spaces), so an id with a control character in it (a NUL from
# a damaged file) or "1.0" next to "1" would silently name a new user or item: such a file is refused instead.
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NUMERIC_ID = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")  # read as a Decimal: 25 digits stay exact


def _id_problem(ids: Iterable[str], role: str) -> tuple[str, str] | None:
    """(id, what is wrong) for the first of the distinct `ids` with a control character or spelling a number
    that an earlier one spells too ("7" and "07", "10" and "1e1"); None when all are fine."""
    spelling: dict[Decimal, str] = {}
    for name in ids:
        if _CONTROL_CHARACTER.search(name):
            return name, f"{role} id {name!r} holds a control character"
        if _NUMERIC_ID.fullmatch(name) and (earlier := spelling.setdefault(Decimal(name), name)) != name:
            return name, (f"{role} id {name!r} spells the same number as {role} id {earlier!r} (ids are compared "
                          "as text: write each id one way)")
    return None


def _checked_ids(reader: Callable[..., RawInteractions | RawItems]):
    """`reader`, refusing a file with an id that `_id_problem` finds; checked once per distinct id, after reading."""
    @functools.wraps(reader)
    def checked(*args):
        raw = reader(*args)
        if isinstance(raw, RawItems):
            if problem := _id_problem(raw.fields, "item"):
                raise InputError(f"{raw.path}, item {problem[0]!r}: {problem[1]}")
            return raw
        for role, names, codes in (("user", raw.user_names, raw.user_codes), ("item", raw.item_names,
                                                                                raw.item_codes)):
            if problem := _id_problem(names, role):
                raise InputError(f"{raw.where(codes.index(names.index(problem[0])))}: {problem[1]}")
        return raw
    return checked


def _number(value: Any, path: Path, number: int, key: str, parse: Callable[[Any], float] = float) -> float:
    try:
        result = float(parse(value))
    except (TypeError, ValueError, OverflowError):
        result = math.nan
    # nan / inf parse as floats, but would sort last or count as low ratings without a word
    if not math.isfinite(result):
        raise InputError(f"{path}, line {number}: field {key!r} is not a valid number or time: {value!r}")
    return result


def _title_first(fields: dict[str, Any]) -> dict[str, Any]:
    alias = next((key for key in TITLE_ALIASES if key in fields), None)
    if alias is None or alias == TITLE_KEY:
        return fields
    return {(TITLE_KEY if key == alias else key): value for key, value in fields.items()}


# ----------------------------------------------------------------------------------------------- JSON-lines reviews
def _yelp_time(value: str) -> float:
    """Seconds since the epoch; a date without a UTC offset is read as UTC, one with an offset keeps it."""
    moment = datetime.fromisoformat(value)
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


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


@_checked_ids
def _read_reviews(schema: ReviewSchema, path: Path, encoding: str, show_progress: bool) -> RawInteractions:
    raw = RawInteractions(path, timed=True, rated=True)
    for number, line in read_lines(path, encoding, show_progress):
        record = parse_record(path, number, line, schema.python_literals)
        raw.add(str(require(record, schema.user, path, number)), str(require(record, schema.item, path, number)),
                number, _number(require(record, schema.rating, path, number), path, number, schema.rating),
                _number(require(record, schema.timestamp, path, number), path, number, schema.timestamp,
                        schema.parse_time))
    return raw


@_checked_ids
def _read_review_meta(schema: ReviewSchema, path: Path, encoding: str, show_progress: bool) -> RawItems:
    items = RawItems(path)
    for number, line in read_lines(path, encoding, show_progress):
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


MOVIELENS_100K_ITEM_FIELDS = ("item_id", "title", "release date", "video release date", "url",
                              *MOVIELENS_100K_GENRES)


def _fields(path: Path, number: int, line: str, separator: str, names: Sequence[str]) -> dict[str, str]:
    """{name: value} of one delimited line."""
    parts = line.split(separator)
    if len(parts) != len(names):
        raise InputError(f"{path}, line {number}: expected {len(names)} fields separated by {separator!r}, "
                         f"found {len(parts)}")
    return dict(zip(names, parts))


@_checked_ids
def _read_movielens_ratings(path: Path, encoding: str, show_progress: bool) -> RawInteractions:
    """u.data (tab-separated) or ratings.dat (`::`-separated): user, item, rating, timestamp."""
    raw = RawInteractions(path, timed=True, rated=True)
    separator = None
    for number, line in read_lines(path, encoding, show_progress):
        separator = separator or ("::" if "::" in line else "\t")
        row = _fields(path, number, line.strip(), separator, ("user", "item", "rating", "timestamp"))
        raw.add(require(row, "user", path, number), require(row, "item", path, number), number,
                _number(row["rating"], path, number, "rating"), _number(row["timestamp"], path, number, "timestamp"))
    return raw


@_checked_ids
def _read_movielens_movies(path: Path, encoding: str, show_progress: bool) -> RawItems:
    """u.item (`|`, 24 fields with genre flags) or movies.dat (`::`, id, title, `|`-joined genres)."""
    items = RawItems(path)
    for number, line in read_lines(path, encoding, show_progress):
        if "::" in line:
            row = _fields(path, number, line, "::", ("item_id", "title", "genres"))
            fields = {"title": row["title"], "genres": row["genres"].split("|")}
        else:
            row = _fields(path, number, line, "|", MOVIELENS_100K_ITEM_FIELDS)
            genres = [name for name in MOVIELENS_100K_GENRES if row[name] == "1"]
            fields = {"title": row["title"], "genres": genres, "release date": row["release date"]}
        items.fields.setdefault(require(row, "item_id", path, number), fields)
    return items


# --------------------------------------------------------------------------------------- headers (RecBole and CSV)
def _header(path: Path, number: int, columns: list[str], required: Sequence[tuple[str, ...]]) -> list[str]:
    """Trimmed column names; each group of `required` must be present (any one name of the group). A name given
    twice is an error: a row read into a dict would silently keep the last of its values."""
    names = [column.strip() for column in columns]
    repeated = next((name for k, name in enumerate(names) if name in names[:k]), None)
    if repeated is not None:
        raise InputError(f"{path}, line {number}: the header names the column {repeated!r} twice")
    for group in required:
        if not any(name in names for name in group):
            raise InputError(f"{path}, line {number}: the header needs a column named "
                             f"{' or '.join(map(repr, group))} (it has {', '.join(map(repr, names))})")
    return names


def _first(names: tuple[str, ...], row: dict) -> str | None:
    return next((name for name in names if name in row), None)


@_checked_ids
def _interaction_columns(path: Path, rows: Iterable[tuple[int, dict[str, str]]],
                         columns: Callable[[dict[str, str]], tuple[str, str, str | None, str | None]]
                         ) -> RawInteractions:
    """(line number, row) pairs of a delimited file streamed into `RawInteractions`; `columns(first row)` names the
    user, item, time and rating columns (None: absent). Only the values are kept, in compact columns: a dict per
    row would take about 9 GB for a log of 20M rows."""
    raw = None  # a test per row that costs no call (20M rows: seconds)
    for number, row in rows:
        if raw is None:
            user, item, time, rating = columns(row)
            raw = RawInteractions(path, timed=time is not None, rated=rating is not None)
        raw.add(require(row, user, path, number), require(row, item, path, number), number,
                timestamp=_number(row[time], path, number, time) if time else None,
                rating=_number(row[rating], path, number, rating) if rating else None)
    return RawInteractions(path) if raw is None else raw


# -------------------------------------------------------------------------------------------- RecBole atomic files
def _recbole_rows(path: Path, encoding: str, show_progress: bool, required: tuple[str, ...]):
    """(line number, {column: value}) for a typed-header file such as `user_id:token<TAB>item_id:token`."""
    header = None
    for number, line in read_lines(path, encoding, show_progress):
        if header is None:
            names = [column.split(":")[0] for column in line.split("\t")]
            header = _header(path, number, names, [(column,) for column in required])
            continue
        yield number, _fields(path, number, line, "\t", header)


def _read_recbole_inter(path: Path, encoding: str, show_progress: bool) -> RawInteractions:
    rows = _recbole_rows(path, encoding, show_progress, ("user_id", "item_id"))
    return _interaction_columns(path, rows, lambda row: ("user_id", "item_id", "timestamp" if "timestamp" in row
                                                         else None, "rating" if "rating" in row else None))


@_checked_ids
def _read_recbole_items(path: Path, encoding: str, show_progress: bool) -> RawItems:
    items = RawItems(path)
    for number, row in _recbole_rows(path, encoding, show_progress, ("item_id",)):
        item_id = require(row, "item_id", path, number)
        items.fields.setdefault(item_id, _title_first({k: v for k, v in row.items() if k != "item_id"}))
    return items


# ------------------------------------------------------------------------------------------------------------- CSV
USER_COLUMNS, ITEM_COLUMNS, TIME_COLUMNS = ("user", "user_id"), ("item", "item_id"), ("timestamp", "time")


def _csv_rows(path: Path, encoding: str, show_progress: bool, required: Sequence[tuple[str, ...]]):
    """(line number, {column: value}) after a header row; quoted fields may span lines."""
    reader = csv.reader(text_lines(path, encoding, show_progress))
    header = None
    try:
        for row in reader:
            if not "".join(row).strip():  # a blank row; one C call, where a generator per row cost seconds
                continue
            if header is None:
                header = _header(path, reader.line_num, row, required)
                continue
            if len(row) != len(header):
                raise InputError(f"{path}, line {reader.line_num}: expected {len(header)} columns "
                                 f"({', '.join(header)}), found {len(row)}")
            yield reader.line_num, dict(zip(header, row))
    except csv.Error as err:  # a cell over csv.field_size_limit(), a stray carriage return
        reason = str(err).split(" - ")[0]  # without the hint about Python's open() that follows
        raise InputError(f"{path}, line {reader.line_num}: unreadable CSV ({reason})") from None


def _read_csv_inter(path: Path, encoding: str, show_progress: bool) -> RawInteractions:
    rows = _csv_rows(path, encoding, show_progress, (USER_COLUMNS, ITEM_COLUMNS))
    return _interaction_columns(path, rows, lambda header: tuple(
        _first(names, header) for names in (USER_COLUMNS, ITEM_COLUMNS, TIME_COLUMNS, ("rating",))))


@_checked_ids
def _read_csv_items(path: Path, encoding: str, show_progress: bool) -> RawItems:
    items = RawItems(path)
    for number, row in _csv_rows(path, encoding, show_progress, (ITEM_COLUMNS,)):
        key = _first(ITEM_COLUMNS, row)
        item_id = require(row, key, path, number)
        items.fields.setdefault(item_id, _title_first({k: v for k, v in row.items() if k != key}))
    return items


# -------------------------------------------------------------------------------------------- {user: [items]} JSON
@_checked_ids
def _read_seqjson_inter(path: Path, encoding: str, show_progress: bool) -> RawInteractions:
    document = load_json_document(path, encoding)
    if not isinstance(document, dict):
        raise InputError(f"{path}: expected a JSON object {{user: [item ids]}}, got {type(document).__name__}")
    raw = RawInteractions(path, numbered=False)
    seen: set[str] = set()
    for key, sequence in document.items():
        user = key.strip()
        if not user:
            raise InputError(f"{path}, user {key!r}: an empty user id")
        if user in seen:  # " u1" and "u1" name one user: its sequence would be told twice
            raise InputError(f"{path}, user {key!r}: the user {user!r} is given twice (ids are compared without "
                             "surrounding spaces)")
        seen.add(user)
        # bool is an int subclass, but true / false are no item ids
        if not isinstance(sequence, list) or not all(isinstance(item, (int, str)) and not isinstance(item, bool)
                                                      and str(item).strip() for item in sequence):
            raise InputError(f"{path}, user {user!r}: expected a list of item ids (integers or non-empty strings)")
        for item in sequence:
            raw.add(user, str(item).strip())
    return raw


@_checked_ids
def _read_seqjson_items(path: Path, encoding: str, show_progress: bool) -> RawItems:
    document = load_json_document(path, encoding)
    if not isinstance(document, dict):
        raise InputError(f"{path}: expected a JSON object {{item id: {{attribute: value}}}}")
    items = RawItems(path)
    given_as: dict[str, str] = {}  # trimmed id -> the key as written
    for key, fields in document.items():
        item_id = key.strip()
        if not item_id:
            raise InputError(f"{path}, item {key!r}: an empty item id")
        if item_id in given_as:  # as on the interactions side: " 1" and "1" name one item
            raise InputError(f"{path}, item {key!r}: the item {item_id!r} is given twice ({given_as[item_id]!r} and "
                             f"{key!r}; ids are compared without surrounding spaces)")
        if not isinstance(fields, dict):
            raise InputError(f"{path}, item {key!r}: expected an object of attributes, got "
                             f"{type(fields).__name__}")
        given_as[item_id] = key
        items.fields[item_id] = _title_first(fields)
    return items


# ---------------------------------------------------------------------- the reference's inter.txt + item_info.jsonline
def _integer_id(value: Any, role: str, path: Path, number: int) -> str:
    """The reference numbers users and items: "7" and "07" name one item, "oops" or "1.5" none."""
    text = str(value).strip()
    if isinstance(value, bool) or not (text.isascii() and text.isdigit()):
        raise InputError(f"{path}, line {number}: {role} id {value!r} is not an integer (this format numbers "
                         f"users and items)")
    return str(int(text))


def _read_reaemb_inter(path: Path, encoding: str, show_progress: bool) -> RawInteractions:
    raw = RawInteractions(path)
    for number, line in read_lines(path, encoding, show_progress):
        parts = line.split()
        if len(parts) != 2:
            raise InputError(f"{path}, line {number}: expected 'user item', found {len(parts)} fields")
        raw.add(_integer_id(parts[0], "user", path, number), _integer_id(parts[1], "item", path, number), number)
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


def _read_reaemb_items(path: Path, encoding: str, show_progress: bool) -> RawItems:
    items = RawItems(path)
    for number, line in read_lines(path, encoding, show_progress):
        record = parse_record(path, number, line)
        item_id = _integer_id(require(record, "item_id", path, number), "item", path, number)
        items.fields.setdefault(item_id, _parse_reference_prompt(str(require(record, "input", path, number))))
    return items


# ----------------------------------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class SourceFormat:
    read_interactions: Callable[[Path, str, bool], RawInteractions]  # (path, encoding, show_progress)
    read_items: Callable[[Path, str, bool], RawItems]
    description: str
    # Files that already hold the sequences (the reference's, {user: [items]}): a repeat visit there is data.
    keeps_repeats: bool = False
    # The encoding of this source's item files that are not utf-8 (MovieLens 100K and 1M: latin-1).
    legacy_item_encoding: str | None = None


def _review_format(name: str, description: str) -> SourceFormat:
    schema = REVIEW_SCHEMAS[name]
    return SourceFormat(lambda path, encoding, progress: _read_reviews(schema, path, encoding, progress),
                        lambda path, encoding, progress: _read_review_meta(schema, path, encoding, progress),
                        description)


FORMATS: dict[str, SourceFormat] = {
    "amazon2023": _review_format("amazon2023", "Amazon Reviews 2023: reviews JSONL + meta JSONL"),
    "amazon2018": _review_format("amazon2018", "Amazon 2014/2018: reviews + meta, JSON or python-literal lines"),
    "yelp": _review_format("yelp", "Yelp Open Dataset: review.json + business.json"),
    "movielens": SourceFormat(_read_movielens_ratings, _read_movielens_movies,
                              "MovieLens: u.data + u.item, or ratings.dat + movies.dat",
                              legacy_item_encoding="latin-1"),
    "recbole": SourceFormat(_read_recbole_inter, _read_recbole_items, "RecBole atomic files: .inter + .item"),
    "seqjson": SourceFormat(_read_seqjson_inter, _read_seqjson_items, "{user: [item ids]} JSON + item JSON",
                            keeps_repeats=True),
    "reaemb": SourceFormat(_read_reaemb_inter, _read_reaemb_items,
                           "reference ReaEmb: inter.txt + item_info.jsonline", keeps_repeats=True),
    "csv": SourceFormat(_read_csv_inter, _read_csv_items, "CSV: user,item[,timestamp][,rating] + item CSV"),
}


def get_format(name: str) -> SourceFormat:
    if name not in FORMATS:
        raise InputError(f"unknown format {name!r}; choose one of: {', '.join(FORMATS)}")
    return FORMATS[name]
