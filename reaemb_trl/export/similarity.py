"""The similarity an embedder folder was trained for: saved in its config.json, or, for folders saved before that
was recorded, derived from the stage settings saved beside it."""

from __future__ import annotations

import os
from pathlib import Path

from ..data.sources import load_json_document
from ..embedder import LatentReasoningConfig
from ..errors import InputError
from ..lrcl.losses import LOSSES

LOSS_SIMILARITY = {name: loss.similarity for name, loss in LOSSES.items()}  # each loss says what it trains for
UNKNOWN = "unknown"


def trained_similarity(folder: str | os.PathLike | None) -> str:
    """`cosine`, `dot` or `unknown` (a raw backbone, a folder from elsewhere, a hub id).

    The embedder's config.json records `similarity`, set by the stage that trained it last. Older folders: a CRRL
    folder records the reward's `similarity` in crrl_config.json; it was trained last, so it wins over an LRCL loss
    recorded beside it. An LRCL folder records its `loss` in lrcl_config.json.
    """
    if not folder:
        return UNKNOWN
    folder = Path(folder)
    config = _settings(folder / "config.json")
    if config.get("model_type") == LatentReasoningConfig.model_type and config.get("similarity"):
        return str(config["similarity"])
    crrl = _settings(folder / "crrl_config.json")
    if crrl.get("similarity"):
        return str(crrl["similarity"])
    return LOSS_SIMILARITY.get(_settings(folder / "lrcl_config.json").get("loss"), UNKNOWN)


def _settings(file: Path) -> dict:
    settings = load_json_document(file) if file.is_file() else {}
    if not isinstance(settings, dict):
        raise InputError(f"{file}: expected a JSON object of settings, found a {type(settings).__name__}")
    return settings
