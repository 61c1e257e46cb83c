"""Several embedders that differ only in their thought module, encoded from one pass 1 per batch.

CRRL trains only the thought module, so a CRRL folder and the LRCL folder it started from share the backbone, the
prompts and the pooling: pass 1 (the prompt up to the thought, the expensive part on a decoder) is the same
function for both and runs once per batch for all of them.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
from tqdm.auto import tqdm

from .prompts import pad_prompts

# Config fields that shape pass 1 or the pooling of its states, besides the prompts themselves.
_PASS1_FIELDS = ("pooling", "padding_side", "num_thought_tokens", "hidden_size")
# Texts tokenized (and, in export, encoded and written) at a time: bounds memory on a large catalogue.
BLOCK_SIZE = 1024


def length_batches(prompts: Sequence[Sequence[int]], batch_size: int,
                   show_progress: bool = False) -> Iterator[list[int]]:
    """Row indices in batches of similar prompt length, longest first (little padding per batch)."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
    for start in tqdm(range(0, len(order), batch_size), disable=not show_progress, desc="encode", unit="batch"):
        yield order[start : start + batch_size]


def shares_pass1(first, other, texts: Sequence[str]) -> bool:
    """True when `other` uses the thought, builds the same prompts for `texts` as `first`, and has equal pass-1
    settings and backbone weights, so that `first`'s pass 1 serves it exactly."""
    if not (first.config.use_thought and other.config.use_thought):
        return False
    if any(getattr(first.config, key) != getattr(other.config, key) for key in _PASS1_FIELDS):
        return False
    # compared a chunk at a time: the token ids of a whole catalogue would not fit in memory
    chunks = (texts[start : start + BLOCK_SIZE] for start in range(0, len(texts), BLOCK_SIZE))
    if any(first.prompts.build(chunk) != other.prompts.build(chunk) for chunk in chunks):
        return False
    mine, theirs = dict(first.backbone.named_parameters()), dict(other.backbone.named_parameters())
    return mine.keys() == theirs.keys() and all(torch.equal(mine[name], theirs[name]) for name in mine)


@torch.no_grad()
def encode_sharing_pass1(embedders: Sequence, texts: Sequence[str], batch_size: int = 32,
                         show_progress: bool = True) -> list[torch.Tensor]:
    """`[e.encode(texts) for e in embedders]` with pass 1 run once per batch, by the first embedder.

    Every embedder must pass `shares_pass1` against the first (a ValueError otherwise): the result then equals
    separate `encode` calls on the default execution path.
    """
    first = embedders[0]
    for index, other in enumerate(embedders[1:], start=1):
        if not shares_pass1(first, other, texts):
            raise ValueError(f"embedder {index} does not share pass 1 with embedder 0 (different backbone weights, "
                             "prompts or pooling settings): encode them separately")
    return encode_checked_group(embedders, texts, batch_size, show_progress)


@torch.no_grad()
def encode_checked_group(embedders: Sequence, texts: Sequence[str], batch_size: int = 32,
                         show_progress: bool = True) -> list[torch.Tensor]:
    """`encode_sharing_pass1` for embedders already checked with `shares_pass1` (the check tokenizes every text and
    compares every backbone weight, so it runs once)."""
    first = embedders[0]
    prompts = first.prompts.build(texts)
    results = [torch.empty(len(prompts), e.config.hidden_size, dtype=torch.float32) for e in embedders]
    modes = [e.training for e in embedders]
    for embedder in embedders:
        embedder.eval()
    try:
        for rows in length_batches(prompts, batch_size, show_progress):
            batch = pad_prompts([prompts[i] for i in rows], first.tokenizer.pad_token_id, first.config.padding_side)
            prefix = first.encode_prefix(**{k: v.to(first.thought_embeddings.device) for k, v in batch.items()})
            for embedder, result in zip(embedders, results):
                result[rows] = embedder.embed_with_thoughts(prefix, embedder.thought_mean(prefix)).float().cpu()
    finally:
        for embedder, mode in zip(embedders, modes):
            embedder.train(mode)
    return results
