"""The end-to-end recipe: one YAML file with a section per stage, each section checked against its stage's config."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..embedder.backbone import BUNDLED_MINILM
from ..errors import InputError
from ..io_utils import sha256_json
from ..recipe import load_recipe_yaml
from ..validation import check_numbers

BUNDLED = "bundled"  # dataset paths: the Office 2014 sample inside the package
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
        from ..downstream.protocol import PROTOCOLS

        check_numbers(self, "compare", {"seeds": ">= 1"})
        if not isinstance(self.options, dict):
            raise InputError(f"compare.options must be a mapping of DownstreamConfig keys, got {self.options!r}")

        settable = {f.name for f in dataclasses.fields(DownstreamConfig)} - {"recommender", "protocol", "seed"}
        unknown = sorted(set(self.options) - settable)
        if unknown:
            hints = [f"{key} is now {RENAMED[key]}" for key in unknown if key in RENAMED]
            raise InputError(f"compare.options: unknown key(s) {unknown}" + (f" ({'; '.join(hints)})" if hints else "")
                             + f"; allowed: {sorted(settable)}")
        if self.protocol is not None and self.protocols is not None:
            raise InputError("compare: give `protocol` (one) or `protocols` (a list), not both")
        if self.protocols is not None and (not isinstance(self.protocols, list) or not self.protocols):
            raise InputError(f"compare.protocols must be a non-empty list, got {self.protocols!r}")
        unknown = [p for p in self.protocol_list() if p not in PROTOCOLS]
        if unknown:
            raise InputError(f"compare: unknown protocol(s) {unknown} (choose from {', '.join(PROTOCOLS)})")
        try:  # the values too (finite, in range), now rather than when compare runs
            DownstreamConfig(**self.options)
        except InputError as err:
            raise InputError(f"compare.options: {err}") from None

    def protocol_list(self) -> list[str]:
        """The protocols to report, the checkpoint-selecting one first."""
        if self.protocols is not None:
            return list(dict.fromkeys(self.protocols))
        return [self.protocol or "sampled"]


@dataclass
class PipelineConfig:
    output_dir: str = "outputs/quickstart"
    seed: int = 42
    backbone: str = BUNDLED_MINILM
    dataset: DatasetSection = field(default_factory=DatasetSection)
    lrcl: dict[str, Any] = field(default_factory=dict)  # LRCLConfig keys (`reaemb-trl lrcl --help`)
    crrl: dict[str, Any] = field(default_factory=dict)  # CRRLConfig keys (`reaemb-trl crrl --help`)
    export: ExportSection = field(default_factory=ExportSection)
    compare: CompareSection = field(default_factory=CompareSection)
    extra_arms: list[str] = field(default_factory=list)  # any of EXTRA_ARMS: more stages, tables and trainings

    def __post_init__(self):
        check_numbers(self, "pipeline", {"seed": ">= 0"})
        if not isinstance(self.extra_arms, list) or not all(isinstance(arm, str) for arm in self.extra_arms):
            raise InputError(f"extra_arms must be a list of arm names (any of {list(EXTRA_ARMS)}), "
                             f"got {self.extra_arms!r}")
        unknown = [arm for arm in self.extra_arms if arm not in EXTRA_ARMS]
        if unknown:
            raise InputError(f"extra_arms: unknown arm(s) {unknown}; choose from {list(EXTRA_ARMS)}")

    @classmethod
    def from_yaml(cls, path: str | Path, output_dir: str | None = None,
                  overrides: dict[str, Any] | None = None) -> "PipelineConfig":
        """The recipe at `path`, with `overrides` (dotted keys such as `lrcl.max_steps`) applied before the same
        checks as the recipe's own keys."""
        path = Path(path)
        raw = load_recipe_yaml(path)
        for dotted, value in (overrides or {}).items():
            _set_dotted(raw, dotted, value, str(path))
        try:
            config = _build(cls, raw, str(path))
        except InputError as err:
            raise InputError(str(err) if str(err).startswith(str(path)) else f"{path}: {err}") from None
        if output_dir is not None:
            config.output_dir = output_dir
        _check_stage_keys(config, str(path))
        return config

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def stage_hash(*parts: Any) -> str:
    """A short, stable fingerprint of a stage's resolved settings and of the stages it reads."""
    return sha256_json(parts)[:16]


def _set_dotted(raw: dict, dotted: str, value: Any, where: str) -> None:
    """raw["lrcl"]["max_steps"] = value for "lrcl.max_steps"; a section must be a mapping."""
    *sections, key = dotted.split(".")
    target = raw
    for section in sections:
        target = target.setdefault(section, {})
        if not isinstance(target, dict):
            raise InputError(f"{where}: --{dotted}: `{section}` is not a section of the recipe")
    target[key] = value


def _build(cls, raw: dict, where: str):
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(names))
    if unknown:
        hints = [f"{key} is now {RENAMED[key]}" for key in unknown if key in RENAMED]
        raise InputError(f"{where}: unknown key(s) {unknown}" + (f" ({'; '.join(hints)})" if hints else "")
                         + f"; allowed: {sorted(names)}")
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


def _check_stage_keys(config: PipelineConfig, where: str) -> None:
    """Unknown LRCL / CRRL keys fail now, before any stage runs."""
    from ..crrl import CRRLConfig
    from ..lrcl import LRCLConfig

    for section, config_cls in (("lrcl", LRCLConfig), ("crrl", CRRLConfig)):
        allowed = {f.name for f in dataclasses.fields(config_cls)}
        unknown = sorted(set(getattr(config, section)) - allowed)
        if unknown:
            raise InputError(f"{where}: unknown key(s) in `{section}`: {unknown} (see `reaemb-trl {section} --help`)")
    # Their values too (finite, in range, integers where they count), as the stages will check them: a bad value
    # fails now, before any stage runs or deletes anything.
    for section, config_cls in (("lrcl", LRCLConfig), ("crrl", CRRLConfig)):
        settings = {"seed": config.seed, "output_dir": str(Path(config.output_dir) / section),
                    **getattr(config, section)}
        try:
            config_cls(**settings)
        except InputError as err:
            raise InputError(f"{where}: `{section}`: {err}") from None
