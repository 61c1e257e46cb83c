"""Sharing a trained embedder folder: the model card written into it (README.md) and the upload to the Hub."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from .io_utils import atomic_path

CARD_FILE = "README.md"
# The Hub models behind the bundled backbone names, for the card's `base_model`.
BUNDLED_BASE_MODELS = {"bundled-smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct",
                       "bundled-minilm": "sentence-transformers/all-MiniLM-L6-v2"}
STAGES = {"lrcl": "LRCL (latent reasoning-enhanced contrastive learning)",
          "crrl": "CRRL (collaborative-reward GRPO on the latent thought)",
          "cooc_sft": "CRRL's supervised control (co-occurrence cross-entropy on the thought module)"}


def model_card(stage: str, backbone: str, settings: dict[str, Any], dataset_sha256: str | None,
               metrics: dict[str, float], repo_id: str | None = None) -> str:
    """The README.md of an embedder folder: what it is, its backbone, the stage and its resolved settings, the
    dataset fingerprint, the held-out metrics and a three-line `encode` example."""
    base_model = BUNDLED_BASE_MODELS.get(backbone, None if Path(backbone).is_absolute() else backbone)
    front = {"library_name": "reaemb_trl", "tags": ["reaemb", "item-embeddings", "sequential-recommendation", stage],
             **({"base_model": base_model} if base_model else {})}
    rows = "\n".join(f"| {name} | {value:.4f} |" if isinstance(value, float) else f"| {name} | {value} |"
                     for name, value in metrics.items())
    load_from = repo_id or "PATH_OR_HUB_ID"
    return f"""---
{yaml.safe_dump(front, sort_keys=False).strip()}
---

# Item embedder ({stage.upper()})

An item-embedding model for sequential recommendation trained with reaemb_trl, the ReaEmb method on the Hugging
Face stack: the backbone reads an item's text, a thought module produces one latent thought that is fed back in,
and the pooled states are the item vector.

- Backbone: `{backbone}`
- Stage: {STAGES.get(stage, stage)}
- Dataset fingerprint (sha256 of the prepared folder): `{dataset_sha256 or "unknown"}`

## Use

```python
from reaemb_trl import LatentReasoningEmbedder
embedder = LatentReasoningEmbedder.from_pretrained("{load_from}")
vectors = embedder.encode(["title is Swingline Stapler; brand is Swingline"])
```

## Held-out metrics

| metric | value |
|---|---|
{rows or "| (none) | |"}

## Settings

```yaml
{yaml.safe_dump(settings, sort_keys=True).strip()}
```
"""


def write_model_card(folder: str | os.PathLike, **card: Any) -> Path:
    """Write `model_card(**card)` as folder/README.md, atomically."""
    path = Path(folder) / CARD_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(model_card(**card), encoding="utf-8")
    return path


def files_to_push(folder: str | os.PathLike) -> list[str]:
    """The files of an embedder folder that a push uploads: everything but checkpoints, tracker logs and hidden
    files (paths relative to the folder, sorted)."""
    folder = Path(folder)
    kept = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        parts = path.relative_to(folder).parts
        if parts[0].startswith(("checkpoint-", "logs", ".")) or any(part.startswith(".") for part in parts):
            continue
        kept.append(path.relative_to(folder).as_posix())
    return kept


def push_folder(folder: str | os.PathLike, repo_id: str, revision: str | None = None, private: bool | None = None,
                token: str | None = None) -> str:
    """Upload `files_to_push(folder)` to the Hub repository `repo_id`; returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, exist_ok=True, private=private)
    commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, revision=revision,
                               allow_patterns=files_to_push(folder))
    return commit.commit_url
