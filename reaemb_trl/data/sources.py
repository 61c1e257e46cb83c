"""Low-level reading shared by every reader: gzip detection, strict decoding, line numbers, JSON records."""

from __future__ import annotations

import ast
import gzip
import json
import zlib
from pathlib import Path
from typing import Any, Iterator

from tqdm import tqdm

from ..errors import InputError

_GZIP_MAGIC = b"\x1f\x8b"


def existing_file(path, role: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {role} file not found")
    return path


def open_binary(path: Path):
    with open(path, "rb") as handle:
        is_gzip = handle.read(2) == _GZIP_MAGIC
    return gzip.open(path, "rb") if is_gzip else open(path, "rb")


def _decode(path: Path, number: int, raw: bytes, encoding: str) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as err:
        raise InputError(f"{path}, line {number}: bytes that are not valid {encoding} "
                         f"(byte {err.start} of the line: {err.reason})") from None


def read_lines(path: Path, encoding: str = "utf-8", show_progress: bool = True) -> Iterator[tuple[int, str]]:
    """(line number, text without the newline) for every non-blank line; gzipped files are read directly."""
    try:
        with open_binary(path) as handle:
            lines = tqdm(handle, desc=f"reading {path.name}", unit=" lines", disable=not show_progress or None,
                         mininterval=1.0)
            for number, raw in enumerate(lines, 1):
                text = _decode(path, number, raw, encoding).rstrip("\r\n")
                if text.strip():
                    yield number, text
    except (OSError, EOFError) as err:  # a truncated or corrupt .gz surfaces here
        raise InputError(f"{path}: cannot be read ({err})") from None


def parse_record(path: Path, number: int, line: str, python_literals: bool = False) -> dict:
    """One JSON object per line; `python_literals` also accepts `{'key': ...}` lines (old Amazon dumps)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        record = _literal(line) if python_literals else None
        if record is None:
            raise InputError(f"{path}, line {number}: malformed JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(record, dict):
        raise InputError(f"{path}, line {number}: expected a JSON object, got {type(record).__name__}")
    return record


def _literal(line: str) -> Any:
    try:
        return ast.literal_eval(line)  # literals only: never eval
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def load_json_document(path: Path) -> Any:
    """A whole-file JSON document, with the line of any decoding or syntax error in the message."""
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:  # corrupt or truncated
            raise InputError(f"{path}: damaged gzip file ({err or type(err).__name__})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise InputError(f"{path}, line {line}: bytes that are not valid utf-8 ({err.reason})") from None
    if not text.strip():
        raise InputError(f"{path}: empty input")
    try:
        return json.loads(text, object_pairs_hook=lambda pairs: _unique_keys(pairs, path))
    except json.JSONDecodeError as err:
        raise InputError(f"{path}, line {err.lineno}: malformed JSON ({err.msg} at column {err.colno})") from None
    except RecursionError:
        raise InputError(f"{path}: JSON nested too deeply to read") from None


def _unique_keys(pairs: list[tuple[str, Any]], path: Path) -> dict:
    """A JSON object; a repeated key is an error (json.loads would keep the last value and drop the others)."""
    document = {}
    for key, value in pairs:
        if key in document:
            raise InputError(f"{path}: the key {key!r} appears more than once in one JSON object")
        document[key] = value
    return document


def require(record: dict, key: str, path: Path, number: int, what: str = "line") -> Any:
    value = record.get(key)
    if value is None or value == "":
        raise InputError(f"{path}, {what} {number}: missing required field {key!r}")
    return value
