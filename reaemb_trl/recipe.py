"""YAML recipes with command-line overrides, parsed the way TRL scripts parse theirs (`TrlParser`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TypeVar

from .errors import InputError

ConfigT = TypeVar("ConfigT")


def parse_recipe(config_cls: type[ConfigT], argv: list[str], prog: str | None = None) -> ConfigT:
    """`--config RECIPE.yaml` sets defaults, `--key value` overrides them; an unknown key is an InputError naming it."""
    from trl import TrlParser

    if "--config" in argv:
        recipe = Path(argv[argv.index("--config") + 1])
        if not recipe.is_file():
            raise InputError(f"{recipe}: recipe file not found")
    parser = TrlParser((config_cls,), prog=prog)
    try:
        (config,) = parser.parse_args_and_config(argv)
    except ValueError as err:
        raise InputError(str(err)) from err
    return config


def config_to_dict(config) -> dict:
    """A JSON-ready view of a config dataclass (TrainingArguments-based configs have their own `to_dict`)."""
    if hasattr(config, "to_dict"):
        return config.to_dict()
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
