"""PrefixCache: reused pass-1 results give the embeddings and group samples of a fresh pass, on both paths."""

import pytest
import torch

from reaemb_trl.embedder import LatentReasoningEmbedder, PrefixCache
from reaemb_trl.embedder.loading import LoadingOptions
from reaemb_trl.errors import InputError
from reaemb_trl.testing import build_tiny_decoder

TEXTS = [
    "title is Pilot G2 Gel Pen; brand is Pilot; categories is Office Products, Writing, Pens; price is 9.99",
    "title is Stapler",
    "title is Toy Story 1995; categories is Animation Children's Comedy",
    "title is Post-it Notes, 3 x 3 inches, Canary Yellow",
]


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def decoder_embedder(padding_side, j):
    model, tokenizer = build_tiny_decoder("qwen2", seed=0)
    return LatentReasoningEmbedder.from_backbone(model, LoadingOptions(num_thought_tokens=j,
                                                                       padding_side=padding_side), tokenizer=tokenizer)


@pytest.mark.parametrize("padding_side", ["left", "right"])
@pytest.mark.parametrize("j", [1, 2])
def test_cached_decoder_prefixes_give_the_same_embeddings(padding_side, j):
    embedder = decoder_embedder(padding_side, j)
    expected = embedder.encode(TEXTS, show_progress=False)
    cache = PrefixCache(max_prompts=10)
    # First call fills the cache from batches of other compositions; the second is served from it entirely.
    first = embedder.encode(TEXTS[:3], batch_size=2, show_progress=False, prefix_cache=cache)
    assert (len(cache), cache.hits, cache.misses) == (3, 0, 3)
    second = embedder.encode(TEXTS[::-1], batch_size=4, show_progress=False, prefix_cache=cache)
    assert (len(cache), cache.hits, cache.misses) == (4, 3, 4)
    assert rel_err(first, expected[:3]) < 1e-5
    assert rel_err(second, expected.flip(0)) < 1e-5

    # The thought module changes (as in CRRL): the cached prefixes still give the fresh embeddings.
    with torch.no_grad():
        embedder.thought_module.v_proj.weight.mul_(-2.0)
    assert rel_err(embedder.encode(TEXTS, show_progress=False, prefix_cache=cache),
                   embedder.encode(TEXTS, show_progress=False)) < 1e-5


def test_cached_prefix_serves_group_sampling():
    embedder = decoder_embedder("left", 1)
    cache = PrefixCache(max_prompts=2)  # smaller than the batch: the call must still use every row it computed
    prompts = embedder.prompts.build(TEXTS)
    cached = embedder.encode_prefix_cached(prompts, cache)
    assert len(cache) == 2
    fresh = embedder.encode_prefix(**embedder.tokenize(TEXTS))
    noise_a, noise_b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    thoughts_a, embeddings_a = embedder.sample_group(cached, 4, 0.1, generator=noise_a)
    thoughts_b, embeddings_b = embedder.sample_group(fresh, 4, 0.1, generator=noise_b)
    assert rel_err(thoughts_a, thoughts_b) < 1e-5
    assert rel_err(embeddings_a, embeddings_b) < 1e-5


def test_cached_encoder_prefixes_give_the_same_embeddings(minilm_path):
    embedder = LatentReasoningEmbedder.from_backbone(minilm_path, LoadingOptions(max_length=48))
    assert embedder.resolve_execution_path(None) == "reference" and embedder.config.padding_side == "right"
    cache = PrefixCache(max_prompts=10)
    embedder.encode(TEXTS[1:], show_progress=False, prefix_cache=cache)
    cached = embedder.encode(TEXTS, batch_size=4, show_progress=False, prefix_cache=cache)
    assert (cache.hits, cache.misses) == (3, 4)
    assert rel_err(cached, embedder.encode(TEXTS, show_progress=False)) < 1e-5


def test_cache_is_least_recently_used_and_validated():
    cache = PrefixCache(max_prompts=2)
    cache.put("a", {"row": 1})
    cache.put("b", {"row": 2})
    assert cache.get("a") == {"row": 1}  # "a" is now the most recent
    cache.put("c", {"row": 3})
    assert "b" not in cache and "a" in cache and "c" in cache
    with pytest.raises(InputError, match="max_prompts must be >= 1"):
        PrefixCache(0)
