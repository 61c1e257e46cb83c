"""Save / load round trips, LoRA merging, the bundled MiniLM encoder, QLoRA on CPU."""

import json

import pytest
import torch
from safetensors.torch import load_file

from reaemb_trl.data import PreparedDataset
from reaemb_trl.embedder import LatentReasoningEmbedder
from reaemb_trl.embedder.loading import LoadingOptions
from reaemb_trl.errors import InputError
from reaemb_trl.testing import build_tiny_decoder, save_tiny_decoder

TEXTS = ["title is Pilot G2 Gel Pen; brand is Pilot", "title is Stapler", "title is Toy Story 1995; price is 9.99"]


def perturb_lora(embedder, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in embedder.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)


@pytest.fixture(scope="module")
def backbone_dir(tmp_path_factory):
    return save_tiny_decoder(tmp_path_factory.mktemp("backbone") / "qwen2", arch="qwen2")


def test_save_load_identical_embeddings(backbone_dir, tmp_path):
    embedder = LatentReasoningEmbedder.from_backbone(backbone_dir, LoadingOptions(num_thought_tokens=2, use_peft=True,
                                                                                  pooling="last"))
    perturb_lora(embedder)
    with torch.no_grad():
        embedder.thought_module.q_proj.weight.mul_(1.5)  # "trained" thought weights must travel too
    expected = embedder.encode(TEXTS, show_progress=False)
    embedder.save_pretrained(tmp_path / "model", state_dict={"ignored": torch.zeros(1)}, safe_serialization=True)
    names = {p.name for p in (tmp_path / "model").iterdir()}
    assert {"config.json", "thought_module.safetensors", "adapter", "tokenizer.json"} <= names
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in names)
    assert "model.safetensors" not in names  # the backbone is stored by reference, not copied
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["backbone_name_or_path"] == str(backbone_dir.resolve())
    assert config["num_thought_tokens"] == 2 and config["pooling"] == "last"
    assert set(load_file(tmp_path / "model" / "thought_module.safetensors")) == {
        "thought_module.q_proj.weight", "thought_module.k_proj.weight", "thought_module.v_proj.weight",
        "thought_embeddings"}

    loaded = LatentReasoningEmbedder.from_pretrained(tmp_path / "model")
    assert torch.equal(loaded.encode(TEXTS, show_progress=False), expected)
    assert loaded.name_or_path == str(tmp_path / "model")
    assert not any(p.requires_grad for n, p in loaded.named_parameters() if "lora" in n)
    trainable = LatentReasoningEmbedder.from_pretrained(tmp_path / "model", is_trainable=True)
    assert any(p.requires_grad for n, p in trainable.named_parameters() if "lora" in n)


def test_use_thought_false_is_saved_and_is_the_default(backbone_dir, tmp_path):
    embedder = LatentReasoningEmbedder.from_backbone(backbone_dir, LoadingOptions(use_thought=False))
    with torch.no_grad():
        embedder.thought_module.v_proj.weight.mul_(3.0)  # make the thought matter
    embedder.save_pretrained(tmp_path / "plain")
    assert json.loads((tmp_path / "plain" / "config.json").read_text())["use_thought"] is False
    loaded = LatentReasoningEmbedder.from_pretrained(tmp_path / "plain")
    without = loaded.encode(TEXTS, show_progress=False, use_thought=False)
    with_thought = loaded.encode(TEXTS, show_progress=False, use_thought=True)
    assert not torch.allclose(without, with_thought)
    assert torch.equal(loaded.encode(TEXTS, show_progress=False), without)
    batch = loaded.tokenize(TEXTS)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).embeddings, without)


def test_forward_with_thought_inputs_runs_the_thought_module_only(backbone_dir):
    embedder = LatentReasoningEmbedder.from_backbone(backbone_dir, LoadingOptions(num_thought_tokens=2))
    batch = embedder.tokenize(TEXTS)
    with torch.no_grad():
        out = embedder(**batch)
    means = embedder(thought_inputs=out.prefix.thought_inputs()).thought_means
    torch.testing.assert_close(means, out.thought_means)
    means.sum().backward()
    assert embedder.thought_module.q_proj.weight.grad is not None
    with pytest.raises(ValueError, match="not both"):
        embedder(**batch, thought_inputs=out.prefix.thought_inputs())


def test_save_keeps_foreign_files_and_drops_a_stale_adapter(backbone_dir, tmp_path):
    folder = tmp_path / "run"
    (folder / "checkpoints" / "step-1").mkdir(parents=True)
    (folder / "trainer_state.json").write_text("{}")
    LatentReasoningEmbedder.from_backbone(backbone_dir, LoadingOptions(use_peft=True)).save_pretrained(folder)
    assert (folder / "adapter").is_dir()
    plain = LatentReasoningEmbedder.from_backbone(backbone_dir)
    plain.save_pretrained(folder)
    assert not (folder / "adapter").exists()
    assert (folder / "checkpoints" / "step-1").is_dir() and (folder / "trainer_state.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind
    assert torch.equal(LatentReasoningEmbedder.from_pretrained(folder).encode(TEXTS, show_progress=False),
                       plain.encode(TEXTS, show_progress=False))


def test_bad_model_folders(backbone_dir, tmp_path):
    model, tokenizer = build_tiny_decoder("llama")
    in_memory = LatentReasoningEmbedder.from_backbone(model, tokenizer=tokenizer)
    with pytest.raises(InputError, match="built in memory"):
        in_memory.save_pretrained(tmp_path / "x")
    folder = tmp_path / "model"
    LatentReasoningEmbedder.from_backbone(backbone_dir).save_pretrained(folder)
    (folder / "thought_module.safetensors").unlink()
    with pytest.raises(InputError, match="missing thought_module.safetensors"):
        LatentReasoningEmbedder.from_pretrained(folder)
    with pytest.raises(InputError, match="not found"):
        LatentReasoningEmbedder.from_pretrained(tmp_path / "nowhere")


def test_merged_lora_equals_unmerged_and_saves_the_adapter(backbone_dir, tmp_path):
    embedder = LatentReasoningEmbedder.from_backbone(backbone_dir, LoadingOptions(use_peft=True))
    perturb_lora(embedder, seed=3)
    unmerged = embedder.encode(TEXTS, show_progress=False)
    base_only = LatentReasoningEmbedder.from_backbone(backbone_dir).encode(TEXTS, show_progress=False)
    assert (unmerged - base_only).abs().max() > 1e-3  # the adapter matters
    embedder.merge_lora()
    merged = embedder.encode(TEXTS, show_progress=False)
    assert ((merged - unmerged).abs().max() / unmerged.abs().max()) < 1e-5
    embedder.save_pretrained(tmp_path / "merged")
    adapter_bytes = sum(p.stat().st_size for p in (tmp_path / "merged" / "adapter").iterdir())
    assert adapter_bytes < 200_000
    reloaded = LatentReasoningEmbedder.from_pretrained(tmp_path / "merged").encode(TEXTS, show_progress=False)
    assert ((reloaded - unmerged).abs().max() / unmerged.abs().max()) < 1e-5


def test_minilm_embeds_the_bundled_sample(minilm_path, prepared_sample):
    texts = PreparedDataset.load(prepared_sample).item_texts[1:65]
    short = LoadingOptions(max_length=48)  # short prompts keep it quick
    embedder = LatentReasoningEmbedder.from_backbone(minilm_path, short)
    assert LatentReasoningEmbedder.from_backbone(minilm_path).config.max_length == 512  # BERT's position limit
    assert not embedder.config.is_causal and embedder.resolve_execution_path("fast") == "reference"
    table = embedder.encode(texts, batch_size=32, show_progress=False)
    assert table.shape == (64, 384) and table.dtype == torch.float32
    assert torch.isfinite(table).all()
    cosine = torch.nn.functional.normalize(table, dim=1) @ torch.nn.functional.normalize(table, dim=1).T
    assert cosine.fill_diagonal_(0).max() < 0.9999  # distinct items, distinct vectors
    first = embedder.encode(texts[:16], show_progress=False)
    assert torch.equal(embedder.encode(texts[:16], show_progress=False), first)  # repeated calls are identical
    # Another batch composition changes the padding only: the same vectors up to float rounding.
    assert torch.allclose(first, table[:16], rtol=1e-5, atol=1e-6)


def test_qlora_trains_one_step_on_cpu(backbone_dir):
    options = LoadingOptions(use_peft=True, quantization="4bit", bnb_4bit_compute_dtype="float32")  # bitsandbytes NF4
    embedder = LatentReasoningEmbedder.from_backbone(backbone_dir, options)
    embedder.encode(TEXTS[:1], show_progress=False)  # an eval pass first must not break training afterwards
    q_proj = embedder.backbone_model.model.layers[0].self_attn.q_proj.base_layer
    base_before = q_proj.weight.detach().clone()
    trainable = {n: p.detach().clone() for n, p in embedder.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in trainable) and "thought_module.v_proj.weight" in trainable
    optimizer = torch.optim.AdamW([p for p in embedder.parameters() if p.requires_grad], lr=1e-2)
    embedder.train()
    out = embedder(**embedder.tokenize(TEXTS))
    (out.embeddings @ out.embeddings.T).logsumexp(-1).mean().backward()
    optimizer.step()
    changed = {n for n, p in embedder.named_parameters() if n in trainable and not torch.equal(p, trainable[n])}
    assert changed == set(trainable)
    assert type(q_proj.weight).__name__ == "Params4bit" and q_proj.weight.dtype == torch.uint8
    assert torch.equal(q_proj.weight, base_before)


def test_minilm_lora_every_trainable_parameter_gets_a_gradient(minilm_path):
    embedder = LatentReasoningEmbedder.from_backbone(minilm_path, LoadingOptions(use_peft=True, max_length=32))
    trainable = [(n, p) for n, p in embedder.named_parameters() if p.requires_grad]
    assert not any("pooler" in n for n, _ in trainable)  # the unused BERT pooler gets no adapter
    out = embedder(**embedder.tokenize(["title is Pilot G2 Gel Pen", "title is Stapler"]), execution_path="fast")
    out.embeddings.pow(2).sum().backward()
    assert all(p.grad is not None for _, p in trainable)
    # lora_B starts at zero, so lora_A's gradient is zero at step 0; everything else moves.
    assert all(p.grad.abs().max() > 0 for n, p in trainable if "lora_A" not in n)


def test_trained_similarity_is_saved_in_the_config(backbone_dir, tmp_path):
    """Issue 23 §5: the stage that trains the embedder sets `config.similarity`; it is saved, reloaded and read by
    export, before any stage settings file; folders saved before it was recorded fall back to those files."""
    from reaemb_trl.export import trained_similarity
    from reaemb_trl.io_utils import write_json

    embedder = LatentReasoningEmbedder.from_backbone(backbone_dir)
    assert embedder.config.similarity is None  # untrained: nothing to record
    embedder.save_pretrained(tmp_path / "untrained")
    assert trained_similarity(tmp_path / "untrained") == "unknown"
    write_json(tmp_path / "untrained" / "lrcl_config.json", {"loss": "soft_clip"})  # an older LRCL folder
    assert trained_similarity(tmp_path / "untrained") == "dot"

    embedder.config.similarity = "dot"
    embedder.save_pretrained(tmp_path / "trained")
    assert json.loads((tmp_path / "trained" / "config.json").read_text())["similarity"] == "dot"
    assert LatentReasoningEmbedder.from_pretrained(tmp_path / "trained").config.similarity == "dot"
    write_json(tmp_path / "trained" / "crrl_config.json", {"similarity": "cosine"})
    assert trained_similarity(tmp_path / "trained") == "dot"  # the config wins over the settings files

    embedder.config.similarity = "euclid"
    with pytest.raises(InputError, match="similarity must be one of .*'euclid'"):
        embedder.save_pretrained(tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
