"""Sharing a trained embedder folder: its model card (README.md, a `huggingface_hub.ModelCard`) and the upload to
the Hub, which carries no path of this machine."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .io_utils import atomic_path

CARD_FILE = "README.md"
LIBRARY_NAME = "reaemb_trl"
# The Hub models behind the bundled backbone names, for the card's `base_model`.
BUNDLED_BASE_MODELS = {"bundled-smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct",
                       "bundled-minilm": "sentence-transformers/all-MiniLM-L6-v2"}
STAGES = {"lrcl": "LRCL (latent reasoning-enhanced contrastive learning)",
          "crrl": "CRRL (collaborative-reward GRPO on the latent thought)",
          "cooc_sft": "CRRL's supervised control (co-occurrence cross-entropy on the thought module)"}
# The card's metadata keys in the order the YAML block shows them (the rest follow).
METADATA_ORDER = ["library_name", "pipeline_tag", "base_model", "tags", "embedding_dimension", "similarity",
                  "dataset_sha256"]
# The load snippet; `push_folder` puts the repository's real id into it.
LOAD_CALL = 'LatentReasoningEmbedder.from_pretrained("{}")'
UNPUSHED_ID = "PATH_OR_HUB_ID"
# The Trainer's speed measures, which `evaluate` returns beside the metrics: not results of the model.
SPEED_SUFFIXES = ("_runtime", "_samples_per_second", "_steps_per_second")
# Top-level folders a push leaves out: accelerate's (LRCL) and the Trainer's (CRRL) tracker logs.
TRACKER_FOLDERS = ("logs", "runs")
# Files a push reads as text, to take this machine's paths out of them; the others (weights, images) go as they are.
TEXT_SUFFIXES = (".json", ".md", ".yaml", ".yml", ".txt")


def model_card(stage: str, backbone: str, settings: dict[str, Any], dataset_sha256: str | None,
               metrics: dict[str, float], repo_id: str | None = None, *, start_metrics: dict[str, float] | None = None,
               embedding_dim: int | None = None, similarity: str | None = None) -> str:
    """The README.md of an embedder folder. Metadata (a `ModelCardData`): library, `feature-extraction`, the base
    model when it is on the Hub, tags, embedding dimension, similarity, dataset fingerprint, and `metrics` (this
    model's held-out results; the Trainer's speed measures are dropped) as model-index eval results. Text: what it
    is, a load snippet, the metrics beside `start_metrics` (the same keys, before this stage trained), `settings`."""
    metrics = {name: value for name, value in metrics.items() if not name.endswith(SPEED_SUFFIXES)}
    numbers = {name: value for name, value in metrics.items() if _is_number(value)}
    sha = dataset_sha256 or "unknown"
    eval_results = [EvalResult(task_type="feature-extraction", task_name="item embedding (held-out items)",
                               dataset_type="reaemb-prepared-dataset", dataset_name=f"prepared dataset {sha[:12]}",
                               dataset_revision=dataset_sha256, dataset_split="held-out items",
                               metric_type=name, metric_name=name, metric_value=value)
                    for name, value in numbers.items()]
    data = ModelCardData(library_name=LIBRARY_NAME, pipeline_tag="feature-extraction", base_model=_base_model(backbone),
                         tags=["reaemb", "item-embeddings", "sequential-recommendation", stage],
                         model_name=repo_id or f"reaemb-{stage}", eval_results=eval_results or None,
                         embedding_dimension=embedding_dim, similarity=similarity, dataset_sha256=dataset_sha256)
    body = f"""
# Item embedder ({stage.upper()})

An item-embedding model for sequential recommendation trained with reaemb_trl, the ReaEmb method on the Hugging
Face stack: the backbone reads an item's text, a thought module produces one latent thought that is fed back in,
and the pooled states are the item vector.

- Backbone: `{backbone}`
- Stage: {STAGES.get(stage, stage)}
- Embedding dimension: {embedding_dim or "unknown"}
- Similarity: {similarity or "unknown"} (compare item vectors with it)
- Dataset fingerprint (sha256 of the prepared folder): `{sha}`

## Use

```python
from reaemb_trl import LatentReasoningEmbedder
embedder = {LOAD_CALL.format(repo_id or UNPUSHED_ID)}
vectors = embedder.encode(["title is Swingline Stapler; brand is Swingline"])
```

## Held-out metrics

{_metrics_table(metrics, start_metrics or {})}

## Settings

```yaml
{yaml.safe_dump(settings, sort_keys=True).strip()}
```
"""
    return f"---\n{data.to_yaml(original_order=METADATA_ORDER)}\n---\n{body}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _base_model(backbone: str) -> str | None:
    """The Hub id the backbone comes from; None for a local folder (a Hub card must not name this machine's paths)."""
    if backbone in BUNDLED_BASE_MODELS:
        return BUNDLED_BASE_MODELS[backbone]
    local = Path(backbone).is_absolute() or backbone.startswith(".") or Path(backbone).exists()
    return None if local else backbone


def _metrics_table(metrics: dict[str, Any], start: dict[str, Any]) -> str:
    def cell(value):
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    if not metrics:
        return "| metric | value |\n|---|---|\n| (none) | |"
    if not start:
        return "| metric | value |\n|---|---|\n" + "\n".join(f"| {name} | {cell(value)} |"
                                                        for name, value in metrics.items())
    return "| metric | before this stage | after |\n|---|---|---|\n" + "\n".join(
        f"| {name} | {cell(start[name]) if name in start else ''} | {cell(value)} |" for name, value in metrics.items())


def write_model_card(folder: str | os.PathLike, **card: Any) -> Path:
    """Write `model_card(**card)` as folder/README.md, atomically. The embedding dimension and the similarity,
    when not given, are read from the folder (its config.json; the stage settings saved beside it)."""
    from .export.similarity import UNKNOWN, trained_similarity  # lazy: export imports the LRCL losses

    folder = Path(folder)
    config_file = folder / "config.json"
    if card.get("embedding_dim") is None and config_file.is_file():
        card["embedding_dim"] = json.loads(config_file.read_text(encoding="utf-8")).get("hidden_size")
    if card.get("similarity") is None and trained_similarity(folder) != UNKNOWN:
        card["similarity"] = trained_similarity(folder)
    path = folder / CARD_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(model_card(**card), encoding="utf-8")
    return path


def files_to_push(folder: str | os.PathLike) -> list[str]:
    """The files of an embedder folder that a push uploads (paths relative to the folder, sorted): everything but
    checkpoints, tracker logs, hidden files and the blank cards PEFT writes beside an adapter (README.md is the
    folder's own card only)."""
    folder = Path(folder)
    kept = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        parts = path.relative_to(folder).parts
        if parts[0].startswith("checkpoint-") or (len(parts) > 1 and parts[0] in TRACKER_FOLDERS):
            continue
        if any(part.startswith(".") for part in parts) or (len(parts) > 1 and parts[-1] == CARD_FILE):
            continue
        kept.append(path.relative_to(folder).as_posix())
    return kept


def pushed_files(folder: str | os.PathLike, repo_id: str) -> dict[str, bytes | Path]:
    """What a push to `repo_id` uploads, by path in the repository: the files of `files_to_push`, the text ones
    rewritten so that no absolute path of this machine is left (each becomes its last component: a backbone folder,
    a dataset folder), the card's load snippet and model-index naming `repo_id`. Binary files are given as paths."""
    folder = Path(folder)
    names = files_to_push(folder)
    local_paths = _absolute_paths(folder, [name for name in names if name.endswith(".json")])
    pushed: dict[str, bytes | Path] = {}
    for name in names:
        path = folder / name
        if not name.endswith(TEXT_SUFFIXES):
            pushed[name] = path
            continue
        text = path.read_text(encoding="utf-8")
        if name == CARD_FILE:
            text = _card_for_repo(text, repo_id)
        for local in local_paths:
            text = text.replace(local, Path(local).name)
        pushed[name] = text.encode("utf-8")
    return pushed


def _absolute_paths(folder: Path, json_files: list[str]) -> list[str]:
    """Every absolute path that the folder's JSON files hold as a value (the backbone, the dataset, the output
    folder, PEFT's base model), the folder's own path too; longest first, so a path goes before its parents."""
    found = {str(folder.resolve()), str(folder.absolute())}

    def walk(node):
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str) and len(node) > 1 and os.path.isabs(node):
            found.add(node.rstrip("/"))

    for name in json_files:
        try:
            walk(json.loads((folder / name).read_text(encoding="utf-8")))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue  # not JSON after all: it is still scrubbed of the paths the others name
    return sorted(found, key=len, reverse=True)


def _card_for_repo(text: str, repo_id: str) -> str:
    card = ModelCard(text)
    before, after = LOAD_CALL.split("{}")
    card.text = re.sub(f"{re.escape(before)}[^\"]*{re.escape(after)}", LOAD_CALL.format(repo_id), card.text)
    if card.data.eval_results:
        card.data.model_name = repo_id
    return str(card)


def push_folder(folder: str | os.PathLike, repo_id: str, revision: str | None = None, private: bool | None = None,
                token: str | None = None) -> str:
    """Upload `pushed_files(folder, ...)` to the Hub repository `repo_id` in one commit; returns the commit URL."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(token=token)
    repo = api.create_repo(repo_id, exist_ok=True, private=private)  # its id carries the namespace
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=content if isinstance(content, bytes)
                                     else str(content))
                  for name, content in pushed_files(folder, repo.repo_id).items()]
    commit = api.create_commit(repo.repo_id, operations, commit_message="Upload item embedder (reaemb_trl)",
                               revision=revision)
    return commit.commit_url
