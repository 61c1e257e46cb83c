"""Item text: raw attributes -> cleaned `(key, value)` pairs -> `key is value; key is value`."""

from __future__ import annotations

import html
import re
from typing import Any, Iterable

ATTRIBUTE_SEPARATOR = "; "
DEFAULT_MAX_VALUE_CHARS = 100
# Readers rename their title field to this key; it always comes first in the text.
TITLE_KEY = "title"

_WHITESPACE = re.compile(r"\s+")
# Markup in scraped descriptions: comments and script / style elements go with their content, other tags alone.
# A tag starts with a letter ("< 40mA" and "a <= b" are text).
_MARKUP = re.compile(r"<!--.*?(?:-->|$)|<(script|style)\b.*?(?:</\1\s*>|$)|</?[A-Za-z][^<>]*>",
                     re.DOTALL | re.IGNORECASE)


def flatten_value(value: Any) -> str:
    """One string for a raw attribute: lists joined by ", " (nested ones flattened), dicts as "key: value"."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return ", ".join(f"{key}: {flatten_value(inner)}" for key, inner in value.items() if flatten_value(inner))
    if isinstance(value, (list, tuple)):
        return ", ".join(part for part in map(flatten_value, value) if part)
    return str(value)


def clean_value(value: Any, max_chars: int = DEFAULT_MAX_VALUE_CHARS) -> str:
    """HTML-unescaped, markup removed, one line, no `;` (it separates attributes), at most `max_chars` characters."""
    # Unescaped first: "&lt;script&gt;" is markup that was escaped once more, and goes too.
    text = _MARKUP.sub(" ", html.unescape(flatten_value(value)))
    # Unescaping can itself produce ';' (e.g. "AT&amp;T;"), so the separator is replaced after it.
    text = _WHITESPACE.sub(" ", text.replace(";", ",")).strip()
    return text[:max_chars].rstrip() if max_chars > 0 else text


def item_attributes(fields: dict[str, Any], max_value_chars: int = DEFAULT_MAX_VALUE_CHARS) -> list[tuple[str, str]]:
    """Cleaned `(key, value)` pairs, title first, attributes with an empty value left out."""
    keys = sorted(fields, key=lambda key: key != TITLE_KEY)  # stable: the other keys keep their order
    pairs = ((clean_value(key, 0).replace("_", " "), clean_value(fields[key], max_value_chars)) for key in keys)
    return [(key, value) for key, value in pairs if key and value]


def join_attributes(attributes: Iterable[tuple[str, str]]) -> str:
    return ATTRIBUTE_SEPARATOR.join(f"{key} is {value}" for key, value in attributes)
