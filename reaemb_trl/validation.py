"""Numbers a user gives, checked once in each config dataclass: finite, the right kind, in range.

Every numeric option of a config goes through `check_numbers` in its `__post_init__`, so the CLI, a recipe file,
the pipeline (and its `--dry-run`) and the Python API refuse the same values, before any data is read:

- an `int` field takes an integer (2.5 is refused; 3.0 becomes 3), a `float` field takes a number; `True` / `False`
  are refused for both (YAML's `true` would otherwise be 1);
- a numeric string (YAML reads `1e-4` as a string) is converted; any other string is refused;
- NaN and +-inf are refused everywhere;
- a rule per field bounds it: `"> 0"`, `">= 0"`, `">= 1"`, `"<= 1"`, `"[0, 1)"`, `"[0, 1]"`, `"(0, 1]"`.

`NonFiniteError` is the error of a training run whose loss or weights became NaN / inf, and of a table with
non-finite rows: an `InputError`, so the CLI prints it and exits 2 (what to change is a setting).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Iterable

from .errors import InputError

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_BOUND = re.compile(rf"^(>=|>|<=|<)\s*({_NUMBER})$")
_INTERVAL = re.compile(rf"^([\[(])\s*({_NUMBER})\s*,\s*({_NUMBER})\s*([\])])$")


class NonFiniteError(InputError):
    """A loss, a weight or an exported row became NaN or infinite: the message names the step or the rows."""


def numeric_kind(annotation: Any) -> tuple[str, bool, bool] | None:
    """("int" | "float", optional, is_list) for an int / float field annotation (a type or, under
    `from __future__ import annotations`, its string), None for any other field (bool, str, mixed unions)."""
    text = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    names = set(re.findall(r"[A-Za-z_]+", text.replace("typing.", "")))
    optional = "None" in names or "Optional" in names
    is_list = bool(names & {"list", "List", "Sequence", "tuple"})
    core = names - {"None", "Optional", "Union", "list", "List", "Sequence", "tuple"}
    if core == {"int"}:
        return "int", optional, is_list
    if core in ({"float"}, {"int", "float"}):
        return "float", optional, is_list
    return None


def _rule_test(rule: str):
    """(test, wording) of a rule string; ValueError for a rule this module does not understand."""
    rule = rule.strip()
    bound = _BOUND.match(rule)
    if bound:
        op, limit = bound.group(1), float(bound.group(2))
        tests = {">=": lambda v: v >= limit, ">": lambda v: v > limit, "<=": lambda v: v <= limit,
                 "<": lambda v: v < limit}
        return tests[op], f"{op} {bound.group(2)}"
    interval = _INTERVAL.match(rule)
    if interval:
        left, right = interval.group(1), interval.group(4)
        low, high = float(interval.group(2)), float(interval.group(3))

        def test(v):
            return (v >= low if left == "[" else v > low) and (v <= high if right == "]" else v < high)

        return test, f"in {left}{interval.group(2)}, {interval.group(3)}{right}"
    raise ValueError(f"unknown range rule {rule!r}")


def check_number(value: Any, where: str, kind: str = "float", rule: str | None = None, optional: bool = False):
    """`value` checked and converted (a numeric string to a number, an integral float to an int for `kind`
    "int"); InputError "{where} must be ..., got {value!r}" otherwise. None passes only when `optional`."""
    if value is None:
        if optional:
            return None
        raise InputError(f"{where} must be {'an integer' if kind == 'int' else 'a number'}, got None")
    original = value
    if isinstance(value, bool):
        raise InputError(f"{where} must be {'an integer' if kind == 'int' else 'a number'}, got {value!r} "
                         "(a boolean)")
    if isinstance(value, str):
        try:
            value = int(value) if re.fullmatch(r"\s*[-+]?\d+\s*", value) else float(value)
        except ValueError:
            raise InputError(f"{where} must be {'an integer' if kind == 'int' else 'a number'}, "
                             f"got {original!r}") from None
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # a numpy / torch scalar
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{where} must be {'an integer' if kind == 'int' else 'a number'}, got {original!r}")
    if not math.isfinite(value):
        raise InputError(f"{where} must be a finite number, got {original!r}")
    if kind == "int":
        if isinstance(value, float):
            if not value.is_integer():
                raise InputError(f"{where} must be an integer, got {original!r}")
            value = int(value)
    if rule is not None:
        test, wording = _rule_test(rule)
        if not test(value):
            raise InputError(f"{where} must be {wording}, got {original!r}")
    return value


def check_numbers(config: Any, label: str, rules: dict[str, str] | None = None,
                  fields: Iterable[str] | None = None) -> None:
    """Check every int / float field of the dataclass `config` (or only `fields`) with `check_number`, and
    write the converted value back. `rules` maps field names to range rules; a list of numbers (e.g.
    `reward_weights`) is checked element by element. Errors read "{label}: {field} must be ..., got ..."."""
    rules = dict(rules or {})
    by_name = {f.name: f for f in dataclasses.fields(config)}
    names = list(by_name) if fields is None else list(fields)
    unknown = [name for name in (*names, *rules) if name not in by_name]
    if unknown:
        raise ValueError(f"{type(config).__name__} has no field(s) {unknown}")
    for name in dict.fromkeys([*names, *rules]):
        kind = numeric_kind(_annotation(type(config), name, by_name[name].type))
        if kind is None:
            if name in rules:
                raise ValueError(f"{type(config).__name__}.{name} is not an int / float field")
            continue
        number_kind, optional, is_list = kind
        value = getattr(config, name)
        where = f"{label}: {name}"
        if is_list:
            if value is None and optional:
                continue
            if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
                value = [value]
            checked = [check_number(v, f"{where}[{i}]", number_kind, rules.get(name)) for i, v in enumerate(value)]
        else:
            checked = check_number(value, where, number_kind, rules.get(name), optional)
        object.__setattr__(config, name, checked)


def _annotation(config_cls: type, name: str, fallback: Any) -> Any:
    """The field's annotation as its class wrote it: `Field.type` is not reliable, HfArgumentParser rewrites it in
    place (`int | None` becomes `int`)."""
    for cls in config_cls.__mro__:
        annotations = vars(cls).get("__annotations__", {})
        if name in annotations:
            return annotations[name]
    return fallback


def nonfinite_rows(rows) -> list[int]:
    """Indices of the rows of a 2-D array (numpy or torch) that hold a NaN or an infinity."""
    import numpy as np

    array = rows.detach().cpu().numpy() if hasattr(rows, "detach") else np.asarray(rows)
    if array.ndim == 1:
        array = array[:, None]
    return np.flatnonzero(~np.isfinite(array).all(axis=tuple(range(1, array.ndim)))).tolist()
