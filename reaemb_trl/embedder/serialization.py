"""The embedder folder's file names, its trained weights and its checked readers: one writer (`save_embedder_folder`)
and one reader, used by `LatentReasoningEmbedder.save_pretrained` / `from_pretrained` and by the CRRL trainer's resume.

Every reader turns a damaged folder (malformed or wrong-typed config.json, missing or wrong-shaped tensors, a
truncated safetensors file, a missing adapter config, backbone or tokenizer) into an InputError that names the
folder, the file or field and what is wrong, instead of a traceback from safetensors, peft or transformers."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

from peft import PeftModel, set_peft_model_state_dict
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer

from ..errors import InputError
from ..io_utils import staged_update, write_json
from .backbone import BUNDLED_BACKBONES, load_backbone
from .configuration import LatentReasoningConfig, check_similarity

CONFIG_FILE = "config.json"
THOUGHT_MODULE_FILE = "thought_module.safetensors"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"  # what every tokenizer's save_pretrained writes
ADAPTER_DIR = "adapter"
ADAPTER_CONFIG_FILE = "adapter_config.json"  # what peft's save_pretrained writes
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
_MODULE_PREFIX = "thought_module."
# What sentence-transformers reads: the module list and the model settings (the similarity among them).
SENTENCE_TRANSFORMERS_MODULES_FILE = "modules.json"
SENTENCE_TRANSFORMERS_CONFIG_FILE = "config_sentence_transformers.json"
SENTENCE_TRANSFORMERS_MODULE = "reaemb_trl.embedder.sentence_transformers_module.LatentReasoningModule"
# Failures of the libraries that read a folder's files (InputError, a ValueError, is re-raised before these).
_READ_ERRORS = (OSError, ValueError, SafetensorError)


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


def require_files(folder: Path) -> None:
    """The files without which `folder` is not an embedder folder at all."""
    for name in (CONFIG_FILE, THOUGHT_MODULE_FILE):
        if not (folder / name).is_file():
            raise InputError(f"{folder}: missing {name}; not a LatentReasoningEmbedder folder "
                             "(write one with LatentReasoningEmbedder.save_pretrained)")


def read_config(folder: Path) -> LatentReasoningConfig:
    """config.json of an embedder folder, every field type-checked."""
    file = folder / CONFIG_FILE
    try:
        values = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"{file}, line {err.lineno}: malformed JSON ({err.msg} at column {err.colno})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{file}: cannot be read ({err})") from None
    if not isinstance(values, dict):
        raise InputError(f"{file}: expected a JSON object of settings, found a {type(values).__name__}")
    model_type = values.get("model_type", LatentReasoningConfig.model_type)
    if model_type != LatentReasoningConfig.model_type:
        raise InputError(f"{file}: model_type is {model_type!r}, not {LatentReasoningConfig.model_type!r}: "
                         "this is not a LatentReasoningEmbedder folder")
    try:
        config = LatentReasoningConfig(**values)
    except (TypeError, ValueError) as err:  # InputError from the config's own checks included
        raise InputError(f"{file}: {err}") from None
    if not config.backbone_name_or_path:
        raise InputError(f"{file}: backbone_name_or_path is empty; the folder cannot name its backbone")
    return config


def check_safetensors(file: Path) -> None:
    """Refuse a truncated or foreign safetensors file by name (reading its header checks that the data covers it)."""
    try:
        with safe_open(str(file), framework="pt"):
            pass
    except _READ_ERRORS as err:
        raise InputError(f"{file}: not a readable safetensors file ({err}); the folder is damaged") from None


def load_saved_tokenizer(folder: Path):
    if not (folder / TOKENIZER_CONFIG_FILE).is_file():
        raise InputError(f"{folder}: missing {TOKENIZER_CONFIG_FILE}; the embedder's tokenizer files are gone "
                         "(save_pretrained writes them)")
    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except InputError:
        raise
    except _READ_ERRORS as err:
        raise InputError(f"{folder}: the tokenizer files cannot be loaded ({err})") from None


def load_saved_backbone(config: LatentReasoningConfig, folder: Path, quantization, dtype):
    """The backbone config.json names, loaded the way it was loaded when the folder was saved."""
    recorded = config.backbone_name_or_path
    location = backbone_location(recorded, folder)
    where = f"{folder / CONFIG_FILE}: backbone_name_or_path {recorded!r}"
    local = Path(location)
    if local.is_absolute() or recorded.startswith((".", "..")):
        if not local.is_dir():
            raise InputError(f"{where}: the backbone folder {local} does not exist")
        for weights in sorted(local.glob("*.safetensors")):
            try:
                check_safetensors(weights)
            except InputError as err:
                raise InputError(f"{where}: {err}") from None
    try:
        return load_backbone(location, quantization, dtype, config.gguf_file, config.backbone_revision,
                             config.attn_implementation, config.trust_remote_code)
    except InputError:
        raise
    except _READ_ERRORS as err:
        raise InputError(f"{where}: the backbone cannot be loaded ({type(err).__name__}: {err})") from None


def backbone_location(recorded: str, folder: Path) -> str:
    """A backbone recorded relative to the embedder folder (`save_pretrained(relative_backbone=True)`) resolves
    against that folder; bundled names, Hub ids and absolute paths stay as they are."""
    if recorded in BUNDLED_BACKBONES or Path(recorded).is_absolute() or not recorded.startswith((".", "..")):
        return recorded
    return str((folder / recorded).resolve())


def load_saved_adapter(backbone, folder: Path, is_trainable: bool):
    """The backbone wrapped with the folder's LoRA adapter (the backbone itself when the folder has none)."""
    adapter = folder / ADAPTER_DIR
    if not adapter.is_dir():
        return backbone
    for name in (ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE):
        if not (adapter / name).is_file():
            raise InputError(f"{adapter}: missing {name}; the LoRA adapter is incomplete (remove the folder for a "
                             "model without LoRA)")
    check_safetensors(adapter / ADAPTER_WEIGHTS_FILE)
    try:
        return PeftModel.from_pretrained(backbone, str(adapter), is_trainable=is_trainable)
    except InputError:
        raise
    except (*_READ_ERRORS, RuntimeError) as err:  # RuntimeError: peft's shape mismatch with the backbone
        raise InputError(f"{adapter}: the LoRA adapter does not fit the backbone ({err})") from None


def save_embedder_folder(embedder, save_directory: str | os.PathLike, relative_backbone: bool = False) -> None:
    """`LatentReasoningEmbedder.save_pretrained` (its docstring says what is written and how)."""
    if not embedder.config.backbone_name_or_path:
        raise InputError("the backbone was built in memory: save it with save_pretrained() and pass that folder "
                         "as backbone_name_or_path to from_backbone() before saving the embedder")
    check_similarity(embedder.config.similarity)  # a trainer sets it after construction
    target = Path(save_directory)
    with staged_update(target, last=CONFIG_FILE) as staging:
        save_thought_weights(embedder, staging)
        save_sentence_transformers_files(staging, embedder.config.similarity)
        embedder.tokenizer.save_pretrained(staging)
        if isinstance(embedder.backbone, PeftModel):
            # Record the backbone's portable name, not the folder it was resolved to on this machine.
            for adapter in embedder.backbone.peft_config.values():
                adapter.base_model_name_or_path = embedder.config.backbone_name_or_path
            embedder.backbone.save_pretrained(staging / ADAPTER_DIR, save_embedding_layers=False)
        config = copy.deepcopy(embedder.config)
        if relative_backbone and Path(config.backbone_name_or_path).is_dir():
            relative = os.path.relpath(Path(config.backbone_name_or_path).resolve(), target.resolve())
            config.backbone_name_or_path = relative if relative.startswith("..") else os.path.join(".", relative)
        config.save_pretrained(staging)
        if not (staging / ADAPTER_DIR).exists() and (target / ADAPTER_DIR).exists():
            shutil.rmtree(target / ADAPTER_DIR)  # a stale adapter would be loaded with this model


def save_thought_weights(embedder, folder: str | os.PathLike) -> None:
    """The thought module and the thought-token embeddings, as one safetensors file."""
    tensors = {f"{_MODULE_PREFIX}{k}": v for k, v in embedder.thought_module.state_dict().items()}
    tensors["thought_embeddings"] = embedder.thought_embeddings.data
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    save_file(tensors, str(Path(folder) / THOUGHT_MODULE_FILE), metadata={"format": "pt"})


def save_sentence_transformers_files(folder: Path, similarity: str | None) -> None:
    """modules.json and config_sentence_transformers.json, so that the folder loads in sentence-transformers
    (`sentence_transformers_module`); `similarity` None leaves sentence-transformers' default (cosine)."""
    write_json(folder / SENTENCE_TRANSFORMERS_MODULES_FILE,
               [{"idx": 0, "name": "0", "path": "", "type": SENTENCE_TRANSFORMERS_MODULE}])
    write_json(folder / SENTENCE_TRANSFORMERS_CONFIG_FILE, {
        "model_type": "SentenceTransformer", "prompts": {}, "default_prompt_name": None,
        "similarity_fn_name": similarity})


def load_thought_weights(embedder, folder: str | os.PathLike, with_adapter: bool = False) -> None:
    """Restore what `save_thought_weights` wrote (and, with `with_adapter`, the LoRA weights of `folder/adapter`,
    when both exist) into `embedder` in place."""
    file = Path(folder) / THOUGHT_MODULE_FILE
    check_safetensors(file)
    tensors = load_file(str(file))
    _check_thought_tensors(embedder, tensors, file)
    embedder.thought_module.load_state_dict(
        {k[len(_MODULE_PREFIX):]: v for k, v in tensors.items() if k.startswith(_MODULE_PREFIX)})
    embedder.thought_embeddings.data.copy_(tensors["thought_embeddings"])
    adapter_file = Path(folder) / ADAPTER_DIR / ADAPTER_WEIGHTS_FILE
    if with_adapter and adapter_file.is_file() and isinstance(embedder.backbone, PeftModel):
        check_safetensors(adapter_file)
        set_peft_model_state_dict(embedder.backbone, load_file(str(adapter_file)))


def _check_thought_tensors(embedder, tensors: dict, file: Path) -> None:
    expected = {f"{_MODULE_PREFIX}{k}": v.shape for k, v in embedder.thought_module.state_dict().items()}
    expected["thought_embeddings"] = embedder.thought_embeddings.shape
    sizes = (f"hidden_size {embedder.config.hidden_size} and num_thought_tokens "
             f"{embedder.config.num_thought_tokens} in {CONFIG_FILE}")
    for name, shape in expected.items():
        if name not in tensors:
            raise InputError(f"{file}: tensor {name!r} is missing; the folder is damaged")
        if tensors[name].shape != shape:
            raise InputError(f"{file}: tensor {name!r} has shape {tuple(tensors[name].shape)}, expected "
                             f"{tuple(shape)} ({sizes})")
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        raise InputError(f"{file}: unexpected tensors {unexpected}; not written by this version's save_pretrained")
