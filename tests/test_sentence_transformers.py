"""Issue 22 §2: a saved embedder folder loads in sentence-transformers (and transformers' AutoModel) and encodes
to the vectors of `LatentReasoningEmbedder.encode`, with the similarity it was trained for."""

import json

import pytest
import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoModel

from reaemb_trl.embedder import LatentReasoningEmbedder
from reaemb_trl.embedder.loading import LoadingOptions
from reaemb_trl.testing import save_tiny_decoder

TEXTS = ["title is Pilot G2 Gel Pen; brand is Pilot; categories is Office Products, Writing, Pens; price is 9.99",
         "title is Stapler", "title is Toy Story 1995; categories is Animation Children's Comedy", "paper"]


def st_encode(folder, texts):
    model = SentenceTransformer(str(folder), trust_remote_code=True)
    return model, model.encode(texts, batch_size=2, convert_to_tensor=True, show_progress_bar=False).cpu()


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A trained-looking tiny decoder embedder: LoRA moved off zero, j = 2, last-token pooling, dot similarity."""
    root = tmp_path_factory.mktemp("st")
    embedder = LatentReasoningEmbedder.from_backbone(save_tiny_decoder(root / "backbone", arch="llama"),
                                                     LoadingOptions(num_thought_tokens=2, pooling="last",
                                                                    use_peft=True, lora_dropout=0.0))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in embedder.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    embedder.config.similarity = "dot"
    embedder.save_pretrained(root / "model")
    return root / "model", embedder.encode(TEXTS, show_progress=False)


def test_tiny_decoder_folder_encodes_the_same_in_sentence_transformers(tiny_folder):
    folder, expected = tiny_folder
    module_class = "reaemb_trl.embedder.sentence_transformers_module.LatentReasoningModule"
    modules = json.loads((folder / "modules.json").read_text())
    assert modules == [{"idx": 0, "name": "0", "path": "", "type": module_class}]
    assert json.loads((folder / "config_sentence_transformers.json").read_text())["similarity_fn_name"] == "dot"
    model, vectors = st_encode(folder, TEXTS)
    torch.testing.assert_close(vectors, expected, rtol=1e-5, atol=1e-5)
    assert model.similarity_fn_name == "dot" and model.get_embedding_dimension() == 64
    scores = model.similarity(vectors[:1], vectors)
    torch.testing.assert_close(scores, vectors[:1] @ vectors.T)  # dot, not cosine


def test_sentence_transformers_needs_trust_remote_code_for_our_module_class(tiny_folder):
    """sentence-transformers 6 imports a module class outside its own package only with trust_remote_code=True
    (the class then comes from the installed reaemb_trl; the folder holds no code)."""
    with pytest.raises(ValueError, match="(?s)LatentReasoningModule.*trust_remote_code=True"):
        SentenceTransformer(str(tiny_folder[0]))


def test_sentence_transformers_save_round_trip_and_automodel(tiny_folder, tmp_path):
    folder, expected = tiny_folder
    model, _ = st_encode(folder, TEXTS[:1])
    model.save(str(tmp_path / "resaved"))
    _, vectors = st_encode(tmp_path / "resaved", TEXTS)
    torch.testing.assert_close(vectors, expected, rtol=1e-5, atol=1e-5)
    auto = AutoModel.from_pretrained(str(folder))
    assert isinstance(auto, LatentReasoningEmbedder)
    assert torch.equal(auto.encode(TEXTS, show_progress=False), expected)


def test_bundled_minilm_folder_encodes_the_same_in_sentence_transformers(minilm_path, tmp_path):
    embedder = LatentReasoningEmbedder.from_backbone(minilm_path, LoadingOptions(max_length=48))
    embedder.save_pretrained(tmp_path / "minilm")
    expected = embedder.encode(TEXTS, show_progress=False)
    # No stage trained it: no similarity recorded, so sentence-transformers keeps its default.
    assert json.loads((tmp_path / "minilm" / "config_sentence_transformers.json").read_text())[
        "similarity_fn_name"] is None
    model, vectors = st_encode(tmp_path / "minilm", TEXTS)
    torch.testing.assert_close(vectors, expected, rtol=1e-5, atol=1e-5)
    assert model.similarity_fn_name == "cosine" and model.get_embedding_dimension() == 384
