"""Recommenders by name: each one a settings class and a model class registered together (PEFT's pattern of a config
class beside its model). The built-ins register in `models/__init__.py`; a recommender from outside the package
registers with `register_recommender(name, config_cls, model_cls)`, or is published under the
`reaemb_trl.recommenders` entry-point group as `name = package.module:ModelClass` (its settings class is the model
class's `config_class`).

What a recommender needs from the trainer and `compare` is said by its model class, never by an `if` on its name:
    uses_table     reads an item table (ID embeddings or an embedding file); False: compare gives it one run of its
                   own, named `run_name` (pop: "popularity"), and no table may be given to it
    deterministic  the same result for every seed; True: compare runs it with the first seed only
The model class builds itself with
    from_config(config, settings, item_table, num_items, train_popularity)
(`config` the shared DownstreamConfig, `settings` an instance of its settings class, `item_table` None when it uses
no table) and offers the trainer `context_length`, `score_all`, `score_candidates` and, if it has parameters to
train, `training_rows` and `calculate_loss` (models/base.py).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
from dataclasses import dataclass

from ..errors import InputError

ENTRY_POINT_GROUP = "reaemb_trl.recommenders"


@dataclass(frozen=True)
class Recommender:
    """One registry entry: the recommender's settings class and model class, and what they say about it."""

    name: str
    config_cls: type
    model_cls: type

    @property
    def uses_table(self) -> bool:
        return getattr(self.model_cls, "uses_table", True)

    @property
    def deterministic(self) -> bool:
        return getattr(self.model_cls, "deterministic", False)

    @property
    def run_name(self) -> str:
        """Compare's name for the one run of a recommender that uses no table."""
        return getattr(self.model_cls, "run_name", None) or self.name

    def options(self) -> dict:
        """Its own settings and their defaults."""
        return dataclasses.asdict(self.config_cls())


RECOMMENDERS: dict[str, Recommender] = {}


def register_recommender(name: str, config_cls: type, model_cls: type) -> Recommender:
    """Make `name` trainable by `evaluate`, `compare` and the pipeline. A name is taken once."""
    if not dataclasses.is_dataclass(config_cls):
        raise InputError(f"recommender {name!r}: its settings class {config_cls!r} must be a dataclass")
    if not callable(getattr(model_cls, "from_config", None)):
        raise InputError(f"recommender {name!r}: {model_cls.__name__} has no from_config classmethod")
    entry = Recommender(name, config_cls, model_cls)
    if RECOMMENDERS.get(name, entry) != entry:
        raise InputError(f"recommender {name!r} is already registered (by {RECOMMENDERS[name].model_cls.__module__})")
    RECOMMENDERS[name] = entry
    return entry


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def available_recommenders() -> list[str]:
    """Registered names (built-ins first), then the names installed packages publish as entry points."""
    return [*RECOMMENDERS, *sorted(set(_entry_points()) - set(RECOMMENDERS))]


def get_recommender(name: str) -> Recommender:
    """The entry of `name`, registering it from its entry point on first use; unknown names are refused."""
    if name in RECOMMENDERS:
        return RECOMMENDERS[name]
    entry_point = _entry_points().get(name)
    if entry_point is None:
        raise InputError(f"recommender {name!r} is unknown (choose from {', '.join(available_recommenders())})")
    model_cls = entry_point.load()
    config_cls = getattr(model_cls, "config_class", None)
    if config_cls is None:
        raise InputError(f"recommender {name!r}: entry point {entry_point.value!r} names no model class with a "
                         "config_class (its settings dataclass)")
    return register_recommender(name, config_cls, model_cls)



def setting_owners(key: str) -> tuple[list[str], str] | None:
    """For a key that is some recommenders' own setting (`num_layers`, which used to be a shared flag): the
    recommenders that have it and an example `recommender_kwargs` value in JSON; None for any other key."""
    owners = [name for name, entry in RECOMMENDERS.items() if key in entry.options()]
    if not owners:
        return None
    return owners, json.dumps({owners[0]: {key: RECOMMENDERS[owners[0]].options()[key]}})
