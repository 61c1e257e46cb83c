"""The end-to-end recipe: one YAML file with a section per stage, each section checked against its stage's config."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.prepare import BUNDLED
from ..embedder.backbone import BUNDLED_MINILM
from ..errors import InputError
from ..io_utils import sha256_json
from ..recipe import help_field, load_recipe_yaml, renamed_hint
from ..validation import check_numbers

# Recipe keys renamed so that each name says one thing: the error for an old key names the new one.
RENAMED = {"backbones": "recommenders", "max_len": "max_items"}
# Baselines a recipe may add with `extra_arms` (run names of `runner.TABLE_RUNS`): `raw_mean`, the untrained backbone
# with mean pooling and no thought (the usual inference-only LLM embedding), and `lrcl_cooc_sft`, CRRL's positives
# and negatives as a supervised loss on the thought module from the LRCL folder (`crrl.cooc_sft`: the control that
# tells CRRL's reinforcement learning from its training signal).
EXTRA_ARMS = ("raw_mean", "lrcl_cooc_sft")


@dataclass
class DatasetSection:
    format: str = "seqjson"
    interactions: str = BUNDLED
    items: str | None = BUNDLED
    options: dict[str, Any] = field(default_factory=dict)  # extra keyword arguments of `prepare_dataset`
    # An already prepared folder (`reaemb-trl prepare` output): used in place, nothing is copied or re-prepared,
    # and the four keys above are ignored.
    prepared: str | None = None

    def __post_init__(self):
        from ..data import PrepareOptions
        from ..data.readers import get_format

        _check_text(self, "dataset", optional=("items", "prepared"))
        if self.prepared is not None:
            return  # a prepared folder is used as it is: the other keys are ignored
        try:
            get_format(self.format)
        except InputError as err:
            raise InputError(f"dataset: format: {err}") from None
        _check_mapping(self.options, "dataset.options", "prepare options (reaemb-trl prepare --help)")
        known = {option.name for option in dataclasses.fields(PrepareOptions)}
        unknown = sorted(set(self.options) - known)
        if unknown:
            raise InputError(f"dataset.options: unknown prepare option(s) {unknown}; known: {sorted(known)}")
        try:  # the values too, before any file is read
            PrepareOptions(**self.options)
        except InputError as err:
            raise InputError(f"dataset.options: {err}") from None


@dataclass
class ExportSection:
    batch_size: int = 64
    pca: int | None = None

    def __post_init__(self):
        check_numbers(self, "export", {"batch_size": ">= 1", "pca": ">= 1"})


@dataclass
class CompareSection:
    recommenders: list[str] = field(default_factory=lambda: ["sasrec"])
    seeds: int = 3
    protocol: str | None = None  # one protocol; `sampled` when neither this nor `protocols` is given
    # Several protocols from one training per model: the first one's validation NDCG@10 picks the checkpoint.
    protocols: list[str] | None = None
    options: dict[str, Any] = field(default_factory=dict)  # DownstreamConfig fields (epochs, max_items, ...)

    def __post_init__(self):
        from ..downstream import DownstreamConfig
        from ..downstream.protocol import check_protocols
        from ..downstream.registry import setting_owners

        check_numbers(self, "compare", {"seeds": ">= 1"})
        if not isinstance(self.options, dict):
            raise InputError(f"compare.options must be a mapping of DownstreamConfig keys, got {self.options!r}")
        if (not isinstance(self.recommenders, list) or not self.recommenders
                or not all(isinstance(name, str) for name in self.recommenders)):
            raise InputError(f"compare: recommenders must be a non-empty list of names (e.g. [sasrec, gru4rec]), "
                             f"got {self.recommenders!r}")

        settable = {f.name for f in dataclasses.fields(DownstreamConfig)} - {"recommender", "protocol", "seed"}
        unknown = sorted(set(self.options) - settable)
        for key in unknown:  # a recommender's own setting, once a shared one
            owned = setting_owners(key)
            if owned:
                raise InputError(f"compare.options: {key} is a setting of {', '.join(owned[0])}, given per "
                                 f"recommender: recommender_kwargs: {owned[1]}")
        if unknown:
            raise InputError(f"compare.options: unknown key(s) {unknown}{renamed_hint(unknown, RENAMED)}; "
                             f"allowed: {sorted(settable)}")
        if self.protocol is not None and self.protocols is not None:
            raise InputError("compare: give `protocol` (one) or `protocols` (a list), not both")
        if self.protocols is not None and (not isinstance(self.protocols, list) or not self.protocols):
            raise InputError(f"compare.protocols must be a non-empty list, got {self.protocols!r}")
        try:
            check_protocols(self.protocol_list())
        except InputError as err:
            raise InputError(f"compare: {err}") from None
        # every run's config, as compare will build it: a bad name or value fails now, not after the training
        for recommender in self.recommenders:
            try:
                DownstreamConfig(**self.options, recommender=recommender, protocol=self.protocol_list()[0])
            except InputError as err:
                raise InputError(f"compare: {err}") from None

    def protocol_list(self) -> list[str]:
        """The protocols to report, the checkpoint-selecting one first."""
        if self.protocols is not None:
            return list(dict.fromkeys(self.protocols))
        return [self.protocol or "sampled"]


@dataclass
class PipelineConfig:
    # the help of the top-level keys is their `reaemb-trl pipeline --help` text (each one is a flag there)
    output_dir: str = help_field("Every stage writes a sub-folder here, report.md at the top.",
                                 default="outputs/quickstart")
    seed: int = help_field("One seed for data order, views, sampling and initialisation.", default=42)
    backbone: str = help_field("bundled-minilm, bundled-smollm2, a local model folder or a hub name.",
                               default=BUNDLED_MINILM)
    dataset: DatasetSection = field(default_factory=DatasetSection)
    lrcl: dict[str, Any] = field(default_factory=dict)  # LRCLConfig keys (`reaemb-trl lrcl --help`)
    crrl: dict[str, Any] = field(default_factory=dict)  # CRRLConfig keys (`reaemb-trl crrl --help`)
    export: ExportSection = field(default_factory=ExportSection)
    compare: CompareSection = field(default_factory=CompareSection)
    extra_arms: list[str] = help_field(f"Baselines to add (more stages, tables and trainings): any of "
                                       f"{', '.join(EXTRA_ARMS)}.", default_factory=list)

    def __post_init__(self):
        check_numbers(self, "pipeline", {"seed": ">= 0"})
        if not isinstance(self.extra_arms, list) or not all(isinstance(arm, str) for arm in self.extra_arms):
            raise InputError(f"extra_arms must be a list of arm names (any of {list(EXTRA_ARMS)}), "
                             f"got {self.extra_arms!r}")
        unknown = [arm for arm in self.extra_arms if arm not in EXTRA_ARMS]
        if unknown:
            raise InputError(f"extra_arms: unknown arm(s) {unknown}; choose from {list(EXTRA_ARMS)}")
        if isinstance(self.output_dir, os.PathLike):
            self.output_dir = os.fspath(self.output_dir)
        _check_text(self, "pipeline", names=("output_dir", "backbone"))
        for section in ("lrcl", "crrl"):
            _check_mapping(getattr(self, section), section, f"{section.upper()}Config keys (`reaemb-trl {section} "
                           "--help`)")
        self.check_stages()

    @classmethod
    def sections(cls) -> list[str]:
        """The recipe's sections (mappings: dataset, lrcl, ...); each other top-level key holds one value."""
        return sorted(_mapping_fields(cls))

    def lrcl_settings(self, data_dir: str | os.PathLike, no_thought: bool = False) -> dict:
        """The settings of an LRCL stage (its recipe, less output_dir): the recipe's `lrcl` keys over the pipeline's
        backbone, dataset and seed."""
        settings = {"model_name_or_path": self.backbone, "dataset_dir": str(data_dir), "seed": self.seed, **self.lrcl}
        return {**settings, "no_thought": True} if no_thought else settings

    def crrl_settings(self, lrcl_dir: str | os.PathLike, data_dir: str | os.PathLike) -> dict:
        """The settings of the CRRL stage (and of its supervised control), from the LRCL folder `lrcl_dir`."""
        return {"lrcl_model_path": str(lrcl_dir), "dataset_dir": str(data_dir), "seed": self.seed, **self.crrl}

    def check_stages(self) -> None:
        """Build every training stage's config as the stage will, so each of its checks runs (CRRL's include its
        reward names): a bad key or value fails now, before any stage runs or deletes anything."""
        from ..crrl import CRRLConfig
        from ..lrcl import LRCLConfig

        out, data_dir = Path(self.output_dir), self.dataset.prepared or Path(self.output_dir) / "data"
        stages = [("lrcl", LRCLConfig, self.lrcl_settings(data_dir), "lrcl"),
                  ("lrcl", LRCLConfig, self.lrcl_settings(data_dir, no_thought=True), "lrcl_no_thought"),
                  ("crrl", CRRLConfig, self.crrl_settings(out / "lrcl", data_dir), "crrl")]
        for section, config_cls, settings, folder in stages:
            renamed = getattr(config_cls, "RENAMED_KEYS", {})
            allowed = {f.name for f in dataclasses.fields(config_cls) if f.init} - set(renamed)
            unknown = sorted(set(getattr(self, section)) - allowed)
            if unknown:
                raise InputError(f"unknown key(s) in `{section}`: {unknown}{renamed_hint(unknown, renamed)} (see "
                                 f"`reaemb-trl {section} --help`)")
            try:
                config_cls(**{**settings, "output_dir": str(out / folder)})  # CRRL also looks up its reward names
            except InputError as err:
                raise InputError(f"`{section}`: {err}") from None

    @classmethod
    def from_yaml(cls, path: str | Path, output_dir: str | None = None,
                  overrides: dict[str, Any] | None = None) -> "PipelineConfig":
        """The recipe at `path`, with `overrides` (dotted keys such as `lrcl.max_steps`) applied before the same
        checks as the recipe's own keys."""
        path = Path(path)
        raw = load_recipe_yaml(path)
        raw.pop("env", None)  # TrlParser's key, not a setting: `reaemb-trl pipeline` sets these environment variables
        for dotted, value in (overrides or {}).items():
            _set_dotted(raw, dotted, value, str(path))
        try:
            config = _build(cls, raw, str(path))
        except InputError as err:
            raise InputError(str(err) if str(err).startswith(str(path)) else f"{path}: {err}") from None
        if output_dir is not None:
            config.output_dir = output_dir
        return config

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def stage_hash(*parts: Any) -> str:
    """A short, stable fingerprint of a stage's resolved settings and of the stages it reads."""
    return sha256_json(parts)[:16]


def _set_dotted(raw: dict, dotted: str, value: Any, where: str) -> None:
    """raw["lrcl"]["max_steps"] = value for "lrcl.max_steps": every name before the last one names a mapping of the
    recipe (a section, or `options` inside dataset / compare)."""
    names = dotted.split(".")
    if not all(names):
        raise InputError(f"{where}: --{dotted}: an empty name in the override; write --KEY VALUE or "
                         "--SECTION.KEY VALUE (e.g. --lrcl.max_steps 10)")
    *sections, key = names
    target, cls = raw, PipelineConfig
    for depth, section in enumerate(sections):
        mappings = _mapping_fields(cls) if cls is not None else {}
        if section not in mappings:
            place = ".".join(sections[:depth]) or "the recipe"
            raise InputError(f"{where}: --{dotted}: `{section}` is not a section of {place} (sections: "
                             f"{', '.join(sorted(mappings)) or 'none'})")
        cls = _SECTIONS.get(mappings[section])
        target = target.setdefault(section, {})
        if not isinstance(target, dict):
            raise InputError(f"{where}: `{'.'.join(sections[:depth + 1])}` must be a mapping, got {target!r}")
    target[key] = value


def _mapping_fields(cls) -> dict[str, str]:
    """The fields of a recipe dataclass that hold a mapping (a section class or a dict), by name -> annotation."""
    return {f.name: f.type for f in dataclasses.fields(cls) if f.type in _SECTIONS or f.type.startswith("dict[")}


def _build(cls, raw: dict, where: str):
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise InputError(f"{where}: unknown key(s) {unknown}{renamed_hint(unknown, RENAMED)}; allowed: {sorted(names)}")
    kwargs = {}
    for key, value in raw.items():
        sub = _SECTIONS.get(names[key].type)
        if sub is not None:
            if not isinstance(value, dict):
                raise InputError(f"{where}: `{key}` must be a mapping")
            value = _build(sub, value, f"{where}: {key}")
        kwargs[key] = value
    return cls(**kwargs)


_SECTIONS = {"DatasetSection": DatasetSection, "ExportSection": ExportSection, "CompareSection": CompareSection}


def _check_text(config: Any, label: str, names: tuple[str, ...] | None = None, optional: tuple[str, ...] = ()) -> None:
    """Every `str` field of the dataclass `config` (or only `names`) holds a string (None too for `optional`):
    YAML's `backbone: 5` fails by name here, not as a type error deep inside a stage."""
    for name in names or [f.name for f in dataclasses.fields(config) if f.type.startswith("str")]:
        value = getattr(config, name)
        if not isinstance(value, str) and not (value is None and name in optional):
            raise InputError(f"{label}: {name} must be a string{' or null' if name in optional else ''}, "
                             f"got {value!r}")


def _check_mapping(value: Any, label: str, what: str) -> None:
    if not isinstance(value, dict):
        raise InputError(f"{label} must be a mapping of {what}, got {value!r}")
    names = [key for key in value if not isinstance(key, str)]
    if names:
        raise InputError(f"{label}: keys must be names, got {names!r}")
