"""The similarity an embedder folder was trained with, read from the stage settings saved in the folder."""

from __future__ import annotations

import os
from pathlib import Path

from ..data.sources import load_json_document
from ..lrcl.losses import LOSSES

LOSS_SIMILARITY = {name: loss.similarity for name, loss in LOSSES.items()}  # each loss says what it trains for
UNKNOWN = "unknown"


def trained_similarity(folder: str | os.PathLike | None) -> str:
    """`cosine`, `dot` or `unknown` (a raw backbone, a folder from elsewhere, a hub id).

    A CRRL folder records the reward's `similarity` in crrl_config.json; it was trained last, so it wins over an
    LRCL loss recorded beside it. An LRCL folder records its `loss` in lrcl_config.json.
    """
    if not folder:
        return UNKNOWN
    folder = Path(folder)
    crrl = _settings(folder / "crrl_config.json")
    if crrl.get("similarity"):
        return str(crrl["similarity"])
    return LOSS_SIMILARITY.get(_settings(folder / "lrcl_config.json").get("loss"), UNKNOWN)


def _settings(file: Path) -> dict:
    return load_json_document(file) if file.is_file() else {}
