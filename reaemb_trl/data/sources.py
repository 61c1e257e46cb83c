"""Low-level reading shared by every reader: gzip detection, strict decoding, line numbers, JSON records."""

from __future__ import annotations

import ast
import codecs
import contextlib
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


def check_encoding(encoding: str) -> str:
    """`encoding` if it is a text encoding that reads ASCII bytes as ASCII: lines are split at the newline byte
    before they are decoded, and every separator is ASCII."""
    ascii_sample = "\n,:\t|a1"
    try:
        readable = ascii_sample.encode("ascii").decode(encoding) == ascii_sample
    except LookupError:  # unknown, or a codec that is no text encoding (base64, rot13)
        raise InputError(f"--encoding: {encoding!r} is not a known text encoding") from None
    except ValueError:  # wide encodings (utf-16, utf-32) cannot even decode these bytes
        readable = False
    if not readable:
        raise InputError(f"--encoding: {encoding!r} does not read ASCII bytes as ASCII (as utf-16, utf-32 or "
                         "EBCDIC); convert the file to utf-8 first")
    return encoding


@contextlib.contextmanager
def _reading(path: Path):
    """A truncated or corrupt .gz surfaces while reading, as any of these: one clear message for all."""
    try:
        yield
    except (OSError, EOFError, zlib.error) as err:
        raise InputError(f"{path}: cannot be read ({err or type(err).__name__})") from None


def detect_encoding(path: Path, fallback: str) -> str:
    """utf-8 when the whole file decodes as utf-8, else `fallback` (the known encoding of an older source)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    with _reading(path), open_binary(path) as handle:
        try:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return fallback
    return "utf-8"


def _decode(path: Path, number: int, raw: bytes, encoding: str) -> str:
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as err:
        raise InputError(f"{path}, line {number}: bytes that are not valid {encoding} "
                         f"(byte {err.start} of the line: {err.reason})") from None
    return text.removeprefix("\ufeff") if number == 1 else text  # a byte-order mark is no part of the data


def text_lines(path: Path, encoding: str = "utf-8", show_progress: bool = True) -> Iterator[str]:
    """Every line, newline kept, decoded one line at a time: a decoding error names the line that holds the bad
    bytes (a decoder reading ahead in blocks, such as io.TextIOWrapper, reports the line it had reached)."""
    with _reading(path), open_binary(path) as handle:
        lines = tqdm(handle, desc=f"reading {path.name}", unit=" lines", disable=not show_progress or None,
                     mininterval=1.0)
        for number, raw in enumerate(lines, 1):
            yield _decode(path, number, raw, encoding)


def read_lines(path: Path, encoding: str = "utf-8", show_progress: bool = True) -> Iterator[tuple[int, str]]:
    """(line number, text without the newline) for every non-blank line; gzipped files are read directly."""
    for number, text in enumerate(text_lines(path, encoding, show_progress), 1):
        text = text.rstrip("\r\n")
        if text.strip():
            yield number, text


class _RepeatedKey(Exception):
    """A key given twice in one JSON object (json.loads would keep the last value); the caller adds where."""

    def __init__(self, key: Any):
        super().__init__(f"the key {key!r} appears more than once in one JSON object")


def _object(pairs: list[tuple[Any, Any]]) -> dict:
    document = dict(pairs)
    if len(document) < len(pairs):  # rare: only then look for the key
        seen = set()
        raise _RepeatedKey(next(key for key, _ in pairs if key in seen or seen.add(key)))
    return document


# One decoder for every call: json.loads with a hook would build a new one per line (a third slower).
_JSON = json.JSONDecoder(object_pairs_hook=_object)


def parse_record(path: Path, number: int, line: str, python_literals: bool = False) -> dict:
    """One JSON object per line; `python_literals` also accepts `{'key': ...}` lines (old Amazon dumps). A key
    given twice in one object is an error, as in a whole JSON document."""
    try:
        record = _decode_record(line, python_literals)
    except json.JSONDecodeError as err:
        raise InputError(f"{path}, line {number}: malformed JSON ({err.msg} at column {err.colno})") from None
    except _RepeatedKey as err:
        raise InputError(f"{path}, line {number}: {err}") from None
    if not isinstance(record, dict):
        raise InputError(f"{path}, line {number}: expected a JSON object, got {type(record).__name__}")
    return record


def _decode_record(line: str, python_literals: bool) -> Any:
    try:
        return _JSON.decode(line)
    except json.JSONDecodeError:
        record = _literal(line) if python_literals else None
        if record is None:
            raise
        return record


def _literal(line: str) -> Any:
    """A python literal (never evaluated as code), or None when the line holds none."""
    try:
        tree = ast.parse(line.strip(), mode="eval")
        record = ast.literal_eval(tree)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    for node in ast.walk(tree):  # literal_eval, like json.loads, keeps the last value of a repeated key
        if isinstance(node, ast.Dict):
            _object([(ast.literal_eval(key), None) for key in node.keys])
    return record


def read_document(path: Path, encoding: str = "utf-8") -> str:
    """A whole (possibly gzipped) file as text, with the line of any decoding error in the message."""
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:  # corrupt or truncated
            raise InputError(f"{path}: damaged gzip file ({err or type(err).__name__})") from None
    try:
        return raw.decode(encoding).removeprefix("\ufeff")  # a byte-order mark is no part of the data
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise InputError(f"{path}, line {line}: bytes that are not valid {encoding} ({err.reason})") from None


def load_json_document(path: Path, encoding: str = "utf-8") -> Any:
    """A whole-file JSON document, with the line of any decoding or syntax error in the message."""
    text = read_document(path, encoding)
    if not text.strip():
        raise InputError(f"{path}: empty input")
    try:
        return _JSON.decode(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{path}, line {err.lineno}: malformed JSON ({err.msg} at column {err.colno})") from None
    except _RepeatedKey as err:
        raise InputError(f"{path}: {err}") from None
    except RecursionError:
        raise InputError(f"{path}: JSON nested too deeply to read") from None


def require(record: dict, key: str, path: Path, number: int, what: str = "line") -> Any:
    """`record[key]`, strings trimmed (ids are compared without surrounding spaces); missing or blank: an error."""
    value = record.get(key)
    if isinstance(value, str):
        value = value.strip()
    if value is None or value == "":
        raise InputError(f"{path}, {what} {number}: missing required field {key!r}")
    return value
