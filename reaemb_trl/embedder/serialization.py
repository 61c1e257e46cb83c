"""The embedder folder's file names and its trained weights: one writer and one reader, used by
`LatentReasoningEmbedder.save_pretrained` / `from_pretrained` and by the CRRL trainer's resume."""

from __future__ import annotations

import os
from pathlib import Path

from peft import PeftModel, set_peft_model_state_dict
from safetensors.torch import load_file, save_file

from ..errors import InputError

CONFIG_FILE = "config.json"
THOUGHT_MODULE_FILE = "thought_module.safetensors"
ADAPTER_DIR = "adapter"
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"  # what peft's save_pretrained writes
_MODULE_PREFIX = "thought_module."


def embedder_folder(name_or_path: str | os.PathLike, revision: str | None = None,
                    cache_dir: str | os.PathLike | None = None) -> Path:
    """The local folder of an embedder: the path itself, or the snapshot of a Hub id (downloaded, or with
    HF_HUB_OFFLINE=1 taken from the cache)."""
    folder = Path(name_or_path)
    if folder.is_dir():
        return folder
    if folder.is_absolute() or str(name_or_path).count("/") != 1:
        raise InputError(f"{folder}: embedder folder not found (and not a Hub id of the form owner/name)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(str(name_or_path), revision=revision, cache_dir=cache_dir))
    except (LocalEntryNotFoundError, RepositoryNotFoundError, HfHubHTTPError, ValueError) as err:
        raise InputError(f"{name_or_path}: not a local embedder folder, and the Hub id (revision {revision or 'main'}) "
                         f"could not be fetched or found in the cache ({type(err).__name__})") from err


def save_thought_weights(embedder, folder: str | os.PathLike) -> None:
    """The thought module and the thought-token embeddings, as one safetensors file."""
    tensors = {f"{_MODULE_PREFIX}{k}": v for k, v in embedder.thought_module.state_dict().items()}
    tensors["thought_embeddings"] = embedder.thought_embeddings.data
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    save_file(tensors, str(Path(folder) / THOUGHT_MODULE_FILE), metadata={"format": "pt"})


def load_thought_weights(embedder, folder: str | os.PathLike, with_adapter: bool = False) -> None:
    """Restore what `save_thought_weights` wrote (and, with `with_adapter`, the LoRA weights of `folder/adapter`,
    when both exist) into `embedder` in place."""
    file = Path(folder) / THOUGHT_MODULE_FILE
    try:
        tensors = load_file(str(file))
    except Exception as err:  # safetensors raises its own error types for a truncated or foreign file
        raise InputError(f"{file}: not a readable safetensors file ({err}); the folder is damaged") from err
    embedder.thought_module.load_state_dict(
        {k[len(_MODULE_PREFIX):]: v for k, v in tensors.items() if k.startswith(_MODULE_PREFIX)})
    embedder.thought_embeddings.data.copy_(tensors["thought_embeddings"])
    adapter_file = Path(folder) / ADAPTER_DIR / ADAPTER_WEIGHTS_FILE
    if with_adapter and adapter_file.is_file() and isinstance(embedder.backbone, PeftModel):
        set_peft_model_state_dict(embedder.backbone, load_file(str(adapter_file)))
