"""Fast path == reference path (embeddings, gradients, group sampling, suffix log-probs) and a hand-written oracle."""

import math

import pytest
import torch

from reaemb_trl.embedder import POOLING_MODES, LatentReasoningEmbedder, PrefixState, ThoughtModule
from reaemb_trl.embedder.loading import LoadingOptions
from reaemb_trl.testing import build_tiny_decoder

# Mixed lengths: the prompts differ by tens of tokens, so padding really happens on either side.
TEXTS = [
    "title is Pilot G2 Gel Pen; brand is Pilot; categories is Office Products, Writing, Pens; price is 9.99",
    "title is Stapler",
    "title is Toy Story 1995; categories is Animation Children's Comedy",
]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def make_embedder(arch="qwen2", j=1, padding_side="left", pooling="mean", seed=0):
    model, tokenizer = build_tiny_decoder(arch, seed=seed)
    options = LoadingOptions(num_thought_tokens=j, pooling=pooling, padding_side=padding_side, use_peft=True,
                             lora_dropout=0.0)
    embedder = LatentReasoningEmbedder.from_backbone(model, options, tokenizer=tokenizer)
    torch.manual_seed(seed + 1)
    with torch.no_grad():  # LoRA B starts at zero; make the adapter change the function
        for name, param in embedder.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    return embedder


def loss_and_grads(embedder, batch, path):
    embedder.zero_grad()
    out = embedder(**batch, execution_path=path)
    # A loss that mixes the rows, as a contrastive loss does.
    loss = (out.embeddings @ out.embeddings.T).logsumexp(-1).sum()
    loss.backward()
    grads = {name: p.grad.clone() for name, p in embedder.named_parameters() if p.requires_grad}
    return out.embeddings.detach(), grads


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
@pytest.mark.parametrize("padding_side", ["left", "right"])
@pytest.mark.parametrize("j", [1, 2])
def test_fast_equals_reference(arch, padding_side, j):
    embedder = make_embedder(arch, j, padding_side)
    batch = embedder.tokenize(TEXTS)
    lengths = batch["attention_mask"].sum(1)
    assert len(set(lengths.tolist())) == 3  # mixed lengths
    pad_column = 0 if padding_side == "left" else -1
    assert batch["attention_mask"][lengths.argmin(), pad_column] == 0

    fast, fast_grads = loss_and_grads(embedder, batch, "fast")
    reference, reference_grads = loss_and_grads(embedder, batch, "reference")
    assert rel_err(fast, reference) < 1e-5
    trainable = {name for name, p in embedder.named_parameters() if p.requires_grad}
    assert {n for n in trainable if n.startswith("thought_module.")} == {
        "thought_module.q_proj.weight", "thought_module.k_proj.weight", "thought_module.v_proj.weight"}
    assert sum("lora_A" in n for n in trainable) == 2 * 7  # q,k,v,o,gate,up,down in 2 layers
    for name in trainable:
        assert reference_grads[name].abs().max() > 0, name
        assert rel_err(fast_grads[name], reference_grads[name]) < 1e-4, name
    # Pass 1 is gradient-free: the thought-token embeddings are frozen and receive nothing.
    assert not embedder.thought_embeddings.requires_grad and embedder.thought_embeddings.grad is None


def test_padding_side_and_batch_composition_do_not_change_embeddings():
    left = make_embedder(padding_side="left")
    right = make_embedder(padding_side="right")
    both = left.encode(TEXTS, show_progress=False)
    assert rel_err(right.encode(TEXTS, show_progress=False), both) < 1e-5
    alone = torch.cat([left.encode([t], show_progress=False) for t in TEXTS])
    assert rel_err(alone, both) < 1e-5


@pytest.mark.parametrize("pooling", [mode for mode in POOLING_MODES if mode != "mean"])
@pytest.mark.parametrize("padding_side", ["left", "right"])
@pytest.mark.parametrize("j", [1, 2])
def test_every_pooling_mode_fast_equals_reference(pooling, padding_side, j):
    # float64: single-token pooling concentrates the loss on one state, and float32 rounding of the lowest layers'
    # gradients then reaches 2e-4; a real mismatch between the paths is orders of magnitude larger.
    embedder = make_embedder("llama", j, padding_side, pooling=pooling).double()
    batch = embedder.tokenize(TEXTS)
    fast, fast_grads = loss_and_grads(embedder, batch, "fast")
    reference, reference_grads = loss_and_grads(embedder, batch, "reference")
    assert rel_err(fast, reference) < 1e-5
    for name, grad in reference_grads.items():
        assert rel_err(fast_grads[name], grad) < 1e-4, name


def _position_weighted(states: torch.Tensor, thought_pos: int) -> torch.Tensor:
    weights = torch.arange(1, states.shape[0] + 1, dtype=states.dtype)
    return (weights[:, None] * states).sum(0) / weights.sum()


# Pooling of one unpadded row of final states [T, d] and its thought column, written out per mode: the oracle of
# every registered mode (a mode without one fails `test_matches_hand_written_two_pass`).
HAND_POOLED = {
    "mean": lambda states, thought_pos: states.mean(0),
    "weighted": _position_weighted,
    "thought": lambda states, thought_pos: states[thought_pos:].mean(0),
    "last": lambda states, thought_pos: states[-1],
}


@pytest.mark.parametrize("pooling", list(POOLING_MODES))
def test_matches_hand_written_two_pass(pooling):
    """An independent oracle: the method written out with the plain transformers model, one item, j = 1."""
    assert pooling in HAND_POOLED, f"pooling mode {pooling!r} has no hand-written oracle in HAND_POOLED"
    embedder = make_embedder("qwen2", 1, pooling=pooling)
    embedder.eval()
    batch = embedder.tokenize(TEXTS[:1])
    ids = batch["input_ids"]
    thought_pos = int((ids[0] == embedder.thought_token_ids[0]).nonzero())
    body = embedder.backbone_model.model  # Qwen2Model with LoRA layers injected
    table = body.get_input_embeddings()
    with torch.no_grad():
        inputs = table(ids).clone()
        inputs[0, thought_pos] = embedder.thought_embeddings[0]
        states = body(inputs_embeds=inputs).last_hidden_state[0]  # pass 1
        module = embedder.thought_module
        d = states.shape[-1]
        inv_freq = 1.0 / 1000.0 ** (torch.arange(0, d, 2).float() / d)

        def rope(x, pos):
            ang = torch.cat([pos * inv_freq, pos * inv_freq])
            return x * ang.cos() + torch.cat([-x[d // 2:], x[: d // 2]]) * ang.sin()

        q = rope(module.q_proj.weight @ states[thought_pos - 1], thought_pos - 1)
        keys = torch.stack([rope(module.k_proj.weight @ states[p], p) for p in range(thought_pos)])
        weights = torch.softmax(keys @ q / math.sqrt(d), 0)
        r = weights @ (states[:thought_pos] @ module.v_proj.weight.T)
        inputs = table(ids).clone()
        inputs[0, thought_pos] = r
        expected = HAND_POOLED[pooling](body(inputs_embeds=inputs).last_hidden_state[0], thought_pos)  # pass 2
        for path in ("fast", "reference"):
            got = embedder(**batch, execution_path=path).embeddings[0]
            assert rel_err(got, expected) < 1e-5, path


def test_group_of_noisy_samples_equals_separate_reference_runs():
    embedder = make_embedder("qwen2", 2, "right")
    embedder.eval()
    batch = embedder.tokenize(TEXTS)
    group = 4
    with torch.no_grad():
        prefix = embedder.encode_prefix(**batch)
        generator = torch.Generator().manual_seed(0)
        thoughts, embeddings = embedder.sample_group(prefix, group, sigma=0.1, generator=generator)
        mu = embedder.thought_mean(prefix)
        reference_prefix = embedder.encode_prefix(**batch, execution_path="reference")
    assert thoughts.shape == (3 * group, 2, 64) and embeddings.shape == (3 * group, 64)
    samples = thoughts.view(3, group, 2, 64)
    assert torch.equal(samples[:, 0], mu)  # first of each group noise-free
    noise_std = (samples[:, 1:] - mu[:, None]).std().item()
    assert 0.08 < noise_std < 0.12
    with torch.no_grad():
        for g in range(group):  # G separate reference runs, one per group member
            separate = embedder.embed_with_thoughts(reference_prefix, samples[:, g].contiguous(), group_size=1)
            assert rel_err(embeddings.view(3, group, -1)[:, g], separate) < 1e-5
        noise_free = embedder(**batch, execution_path="reference").embeddings
    assert rel_err(embeddings.view(3, group, -1)[:, 0], noise_free) < 1e-5


@pytest.mark.parametrize(("noise_free_first", "pairs", "single"),
                         [(True, [(1, 2)], [3]), (False, [(0, 2), (1, 3)], [])])
def test_antithetic_groups_mirror_their_noise(noise_free_first, pairs, single):
    embedder = make_embedder("qwen2", 2, "right")
    embedder.eval()
    with torch.no_grad():
        prefix = embedder.encode_prefix(**embedder.tokenize(TEXTS))
        mu = embedder.thought_mean(prefix)[:, None]
        draws = {mirrored: embedder.sample_group(prefix, 4, sigma=0.1, noise_free_first=noise_free_first,
                                                 generator=torch.Generator().manual_seed(0),
                                                 antithetic=mirrored)[0].view(3, 4, 2, 64) - mu
                 for mirrored in (False, True)}
    noise = draws[True]
    for a, b in pairs:
        assert torch.allclose(noise[:, a], -noise[:, b], atol=1e-6) and noise[:, a].abs().min() > 0
        assert torch.equal(noise[:, a], draws[False][:, a])  # the first of a pair is the plain draw
    for k in single:  # an odd one out stays an independent draw
        assert torch.equal(noise[:, k], draws[False][:, k]) and not torch.allclose(noise[:, k], -noise[:, 1])
    if noise_free_first:
        assert not noise[:, 0].any()


def test_thought_inputs_round_trip_recomputes_mean_with_gradient():
    embedder = make_embedder("llama", 2, "left")
    batch = embedder.tokenize(TEXTS)
    with torch.no_grad():
        prefix = embedder.encode_prefix(**batch)
    stored = {k: v.clone() for k, v in prefix.thought_inputs().items()}
    rebuilt = PrefixState.from_thought_inputs(stored)
    assert rebuilt.cache is None
    mu = embedder.thought_mean(rebuilt)
    assert torch.equal(mu, embedder.thought_mean(prefix))
    mu.sum().backward()
    assert embedder.thought_module.q_proj.weight.grad.abs().max() > 0
    assert all(p.grad is None for n, p in embedder.named_parameters() if "lora" in n)
    with pytest.raises(ValueError, match="encode_prefix"):
        embedder.embed_with_thoughts(rebuilt, mu.detach())


def test_suffix_token_logprobs_fast_equals_full_prompt():
    embedder = make_embedder("qwen2", 1, "right")
    embedder.eval()
    batch = embedder.tokenize(TEXTS)
    eos = embedder.tokenizer.eos_token_id
    with torch.no_grad():
        prefix = embedder.encode_prefix(**batch)
        thoughts, _ = embedder.sample_group(prefix, 2, sigma=0.1, generator=torch.Generator().manual_seed(1))
        fast = embedder.suffix_token_logprobs(prefix, thoughts, group_size=2)
        reference_prefix = embedder.encode_prefix(**batch, execution_path="reference")
        reference = embedder.suffix_token_logprobs(reference_prefix, thoughts, 2)
        # Full prompt through the causal LM itself: log p(EOS | prompt with the noisy thought injected).
        causal_lm = embedder.backbone
        ids = batch["input_ids"].repeat_interleave(2, 0)
        mask = batch["attention_mask"].repeat_interleave(2, 0)
        inputs = embedder.backbone_model.get_input_embeddings()(ids).clone()
        thought_cols = (ids == embedder.thought_token_ids[0]).nonzero()[:, 1]
        inputs[torch.arange(6), thought_cols] = thoughts[:, 0]
        logits = causal_lm(inputs_embeds=inputs, attention_mask=mask).logits
        expected = logits[torch.arange(6), thought_cols].log_softmax(-1)[:, eos]
    assert fast.shape == (6, 1)
    assert rel_err(fast[:, 0], expected) < 1e-5
    assert rel_err(reference[:, 0], expected) < 1e-5


def test_thought_module_attends_only_to_earlier_real_positions():
    torch.manual_seed(0)
    module = ThoughtModule(8)
    module.reset_parameters(value_scale=1.0, generator=torch.Generator().manual_seed(0))
    states = torch.randn(1, 5, 8)
    mask = torch.tensor([[True, True, True, False, True]])
    positions = torch.tensor([[0, 1, 2, 3, 3]])
    r = module(states, mask, positions, torch.tensor([[2]]))
    changed = states.clone()
    changed[0, 3:] = 100.0  # a pad and a later position: neither may matter
    assert torch.equal(module(changed, mask, positions, torch.tensor([[2]])), r)
    # v = identity: r is a convex combination of the visible states.
    assert torch.allclose(module.v_proj.weight, torch.eye(8))
    assert r.abs().max() <= states[0, :3].abs().max() + 1e-6
