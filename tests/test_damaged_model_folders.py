"""Issue 21: a damaged embedder folder is refused with an InputError naming the folder, the file or field and what is
wrong, never a traceback from safetensors, peft, transformers or torch. Each case damages a copy of a real saved
folder (a tiny Llama with LoRA whose config records its backbone relative to itself, so each copy has its own)."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from reaemb_trl.embedder import LatentReasoningEmbedder
from reaemb_trl.embedder.loading import LoadingOptions
from reaemb_trl.errors import InputError
from reaemb_trl.testing import save_tiny_decoder


@pytest.fixture(scope="module")
def saved_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("damaged")
    backbone = save_tiny_decoder(root / "backbone", arch="llama")
    LatentReasoningEmbedder.from_backbone(backbone, LoadingOptions(use_peft=True, max_length=64)).save_pretrained(
        root / "model", relative_backbone=True)
    return root


def _edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def _edit_thought_file(folder: Path, edit) -> None:
    file = folder / "thought_module.safetensors"
    tensors = load_file(file)
    edit(tensors)
    save_file(tensors, file)


def _truncate(file: Path) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])


# id -> (damage(model_folder, backbone_folder), words the message must hold besides the folder)
DAMAGE = {
    "config_missing": (lambda m, b: (m / "config.json").unlink(), ["config.json", "missing"]),
    "config_malformed": (lambda m, b: (m / "config.json").write_text('{"pooling": "mean",'),
                         ["config.json", "malformed JSON", "line 1"]),
    "config_not_an_object": (lambda m, b: (m / "config.json").write_text("[1, 2]"),
                             ["config.json", "JSON object"]),
    "config_wrong_type": (lambda m, b: _edit_config(m, num_thought_tokens="two"),
                          ["config.json", "num_thought_tokens", "'two'"]),
    "config_no_backbone": (lambda m, b: _edit_config(m, backbone_name_or_path=None),
                           ["config.json", "backbone_name_or_path"]),
    "thought_file_missing": (lambda m, b: (m / "thought_module.safetensors").unlink(),
                             ["thought_module.safetensors", "missing"]),
    "thought_file_truncated": (lambda m, b: _truncate(m / "thought_module.safetensors"),
                               ["thought_module.safetensors", "not a readable safetensors file"]),
    "thought_tensor_wrong_shape": (
        lambda m, b: _edit_thought_file(m, lambda t: t.update({"thought_module.q_proj.weight": torch.zeros(8, 8)})),
        ["thought_module.safetensors", "thought_module.q_proj.weight", "(8, 8)", "(64, 64)"]),
    "thought_tensor_missing": (lambda m, b: _edit_thought_file(m, lambda t: t.pop("thought_embeddings")),
                               ["thought_module.safetensors", "thought_embeddings", "missing"]),
    "adapter_config_missing": (lambda m, b: (m / "adapter" / "adapter_config.json").unlink(),
                               ["adapter", "adapter_config.json"]),
    "adapter_weights_truncated": (lambda m, b: _truncate(m / "adapter" / "adapter_model.safetensors"),
                                  ["adapter_model.safetensors"]),
    "backbone_missing": (lambda m, b: shutil.rmtree(b), ["backbone_name_or_path", "backbone"]),
    "backbone_weights_truncated": (lambda m, b: _truncate(b / "model.safetensors"),
                                   ["backbone_name_or_path", "model.safetensors"]),
    "tokenizer_missing": (lambda m, b: [(m / name).unlink() for name in ("tokenizer.json", "tokenizer_config.json")],
                          ["tokenizer"]),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damaged_folder_is_refused_by_name(saved_root, tmp_path, kind):
    root = Path(shutil.copytree(saved_root, tmp_path / "copy"))
    model = root / "model"
    LatentReasoningEmbedder.from_pretrained(model)  # the undamaged copy loads
    damage, words = DAMAGE[kind]
    damage(model, root / "backbone")
    with pytest.raises(InputError) as caught:
        LatentReasoningEmbedder.from_pretrained(model)
    message = str(caught.value)
    assert str(model) in message, message
    for word in words:
        assert word in message, (word, message)


def test_resume_refuses_a_damaged_adapter_by_name(saved_root, tmp_path):
    """CRRL's resume restores the thought weights and the adapter through the same reader."""
    from reaemb_trl.embedder.serialization import load_thought_weights

    root = Path(shutil.copytree(saved_root, tmp_path / "copy"))
    embedder = LatentReasoningEmbedder.from_pretrained(root / "model", is_trainable=True)
    _truncate(root / "model" / "adapter" / "adapter_model.safetensors")
    with pytest.raises(InputError, match="adapter_model.safetensors: not a readable safetensors file"):
        load_thought_weights(embedder, root / "model", with_adapter=True)
