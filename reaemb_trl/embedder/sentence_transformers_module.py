"""A saved embedder folder as a sentence-transformers model: `SentenceTransformer(folder, trust_remote_code=True)`.

`save_pretrained` writes `modules.json` naming `LatentReasoningModule` (this class) as the model's one module, and
`config_sentence_transformers.json` with the similarity the embedder was trained for. The module builds the
embedder's own prompts (instruction, chat template, thought tokens) in `preprocess` and runs both passes in
`forward`, so `encode` returns the vectors of `LatentReasoningEmbedder.encode`.

sentence-transformers (6.x) imports a module class from outside its own package only with `trust_remote_code=True`;
the class comes from the installed reaemb_trl, and no code is read from the folder (save_pretrained writes none).
This file is imported only by sentence-transformers, so the rest of the package does not need it installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from sentence_transformers.base.modules.input_module import InputModule

from ..errors import InputError
from .modeling import LatentReasoningEmbedder


class LatentReasoningModule(InputModule):
    """The whole embedder as one sentence-transformers input module: texts -> `sentence_embedding` [B, d]."""

    save_in_root = True  # the module's files are the embedder folder itself

    def __init__(self, embedder: LatentReasoningEmbedder):
        super().__init__()
        self.embedder = embedder
        self.tokenizer = embedder.tokenizer

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", token: bool | str | None = None,
             cache_folder: str | None = None, revision: str | None = None, local_files_only: bool = False,
             model_kwargs: dict[str, Any] | None = None, **kwargs) -> "LatentReasoningModule":
        """The embedder saved in `model_name_or_path` (a folder or Hub id); `model_kwargs` may give its dtype."""
        folder = cls.load_dir_path(model_name_or_path, subfolder=subfolder, token=token, cache_folder=cache_folder,
                                   revision=revision, local_files_only=local_files_only)
        dtype = (model_kwargs or {}).get("dtype", (model_kwargs or {}).get("torch_dtype"))
        return cls(LatentReasoningEmbedder.from_pretrained(folder, dtype=dtype))

    def save(self, output_path: str, *args, **kwargs) -> None:
        self.embedder.save_pretrained(output_path)

    def preprocess(self, inputs: Sequence[str], prompt: str | None = None, **kwargs) -> dict[str, torch.Tensor]:
        """The embedder's prompts for item texts (a sentence-transformers `prompt` is put before each text)."""
        not_text = next((item for item in inputs if not isinstance(item, str)), None)
        if not_text is not None:
            raise InputError(f"a LatentReasoningEmbedder encodes texts only, got a {type(not_text).__name__}")
        return self.embedder.tokenize([prompt + text for text in inputs] if prompt else list(inputs))

    def forward(self, features: dict[str, torch.Tensor], **kwargs) -> dict[str, torch.Tensor]:
        output = self.embedder(input_ids=features["input_ids"], attention_mask=features["attention_mask"])
        features["sentence_embedding"] = output.embeddings
        return features

    def get_embedding_dimension(self) -> int:
        return self.embedder.config.hidden_size
