"""YAML recipes with command-line overrides, parsed the way TRL scripts parse theirs (`TrlParser`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import yaml

from .errors import InputError

ConfigT = TypeVar("ConfigT")


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (safe_load keeps the last value silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: the keys it brings may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    problem=f"the key {key!r} appears more than once in one mapping", problem_mark=key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def help_field(text: str, **kwargs):
    """A dataclass field with the `--help` text that TrlParser / HfArgumentParser show."""
    return dataclasses.field(metadata={"help": text}, **kwargs)


def renamed_message(keys: Iterable[str], renamed: Mapping[str, str]) -> str:
    """"{old} is now {new}; ..." for the keys that `renamed` (old name -> new name) maps, "" for none: the one
    wording of every renamed-key error (recipes, flags, pipeline sections)."""
    return "; ".join(f"{key} is now {renamed[key]}" for key in keys if key in renamed)


def renamed_hint(unknown: Iterable[str], renamed: Mapping[str, str]) -> str:
    """" ({old} is now {new}; ...)" for the unknown keys that were renamed, to follow an unknown-key error."""
    message = renamed_message(unknown, renamed)
    return f" ({message})" if message else ""


def _refuse_renamed(argv: list[str], recipe: dict, config_classes: Sequence[type]) -> None:
    """An old key in the recipe file or on the command line is refused with its new name, before TrlParser would
    call it merely unknown (or, for a field TRL still has, accept it)."""
    renamed = {old: new for cls in config_classes for old, new in getattr(cls, "RENAMED_KEYS", {}).items()}
    flags = [arg[2:].split("=", 1)[0].replace("-", "_") for arg in argv if arg.startswith("--")]
    used = [key for key in dict.fromkeys([*recipe, *flags]) if key in renamed]
    if used:
        raise InputError(renamed_message(used, renamed))


RECIPE_EPILOG = "--config RECIPE.yaml: a YAML file whose keys set these options; flags given after it override them."


def parse_recipe(config_cls: type[ConfigT], argv: list[str], prog: str | None = None,
                 extra: tuple[type, ...] = (), description: str | None = None):
    """`--config RECIPE.yaml` sets defaults, `--key value` overrides them; an unknown key is an InputError naming it,
    a renamed one (a config class's `RENAMED_KEYS`) an InputError naming its new name.
    Returns the `config_cls` instance, or (it, *instances of `extra`) when `extra` dataclasses are given."""
    _, recipe = read_config_flag(argv)
    _refuse_renamed(argv, recipe, (config_cls, *extra))
    configs = trl_parse((config_cls, *extra), argv, prog=prog, description=description)
    return tuple(configs) if extra else configs[0]


def read_config_flag(argv: list[str]) -> tuple[Path | None, dict]:
    """The recipe file `--config` names and the mapping it holds ((None, {}) without the flag), read before TrlParser
    reads it: a clear error for a missing value or file, a YAML syntax error or a repeated key (and before TRL's slow
    import)."""
    if "--config" not in argv:
        return None, {}
    position = argv.index("--config") + 1
    if position == len(argv) or argv[position].startswith("--"):
        raise InputError("--config needs a recipe file (--config RECIPE.yaml)")
    path = Path(argv[position])
    return path, load_recipe_yaml(path)


def trl_parse(dataclass_types: tuple[type, ...], argv: list[str], prog: str | None = None,
              description: str | None = None, epilog: str = RECIPE_EPILOG, **options) -> tuple:
    """`TrlParser(dataclass_types).parse_args_and_config(argv, **options)`, its ValueErrors (an unknown key, a bad
    `env:`) as InputErrors."""
    from trl import TrlParser

    parser = TrlParser(dataclass_types, prog=prog, description=description, epilog=epilog)
    try:
        return parser.parse_args_and_config(argv, **options)
    except ValueError as err:
        raise InputError(str(err)) from err


def load_recipe_yaml(path: Path) -> dict:
    """The mapping a recipe file holds; InputError (file, line, problem) for a missing file, bad YAML, or a key
    given twice in one mapping."""
    if not path.is_file():
        raise InputError(f"{path}: recipe file not found")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=UniqueKeyLoader) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', None) or err})") from None
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text ({err.reason})") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: a recipe must be a YAML mapping of keys to values")
    return raw


def config_to_dict(config) -> dict:
    """A JSON-ready view of a config dataclass (TrainingArguments-based configs have their own `to_dict`)."""
    if hasattr(config, "to_dict"):
        return config.to_dict()
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
