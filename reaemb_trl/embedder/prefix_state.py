"""What pass 1 leaves for pass 2 (`PrefixState`), and how states of several prompts are selected, split into
single unpadded rows (what a `PrefixCache` stores) and stacked into a batch again."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch.nn.utils.rnn import pad_sequence
from transformers import DynamicCache


@dataclass
class PrefixState:
    """What pass 1 leaves for pass 2 and for the thought module.

    The first four fields are all that `thought_mean` reads (`thought_inputs()` / `from_thought_inputs()` move them
    through a trainer's buffer). Fast path: `cache` holds the prefix KV cache, `prefix_mask` its real positions and
    `suffix_*` the thoughts + following tokens, which continue from each row's true prefix length; `prefix_sum` /
    `prefix_weight` are the prefix's share of the pooling under the embedder's mode, whatever it is (weighted sum of
    its states, sum of its weights; zero for a mode that pools only from the thought on). Reference path: the full
    prompt (`input_ids`, `attention_mask`, `thought_index`) that pass 2 reruns.
    """

    states: torch.Tensor  # [B, N, d] pass-1 final states, detached
    state_mask: torch.Tensor  # [B, N] bool, real positions
    state_positions: torch.Tensor  # [B, N] true (unpadded) positions
    query_index: torch.Tensor  # [B, j] index into N of the state just before each thought
    execution_path: str | None = None  # "fast" or "reference": how pass 1 ran
    cache: DynamicCache | None = None
    prefix_mask: torch.Tensor | None = None  # [B, P] bool
    prefix_sum: torch.Tensor | None = None  # [B, d]
    prefix_weight: torch.Tensor | None = None  # [B]
    suffix_ids: torch.Tensor | None = None  # [B, S]
    suffix_mask: torch.Tensor | None = None  # [B, S] bool
    suffix_positions: torch.Tensor | None = None  # [B, S]
    input_ids: torch.Tensor | None = None  # [B, T]
    attention_mask: torch.Tensor | None = None  # [B, T]
    thought_index: torch.Tensor | None = None  # [B, j] columns of the thought tokens

    THOUGHT_FIELDS = ("states", "state_mask", "state_positions", "query_index")

    @property
    def batch_size(self) -> int:
        return self.states.shape[0]

    def thought_inputs(self) -> dict[str, torch.Tensor]:
        """The tensors the thought module needs, e.g. to store in a trainer's buffer."""
        return {name: getattr(self, name) for name in self.THOUGHT_FIELDS}

    @classmethod
    def from_thought_inputs(cls, inputs: dict[str, torch.Tensor]) -> "PrefixState":
        """A cache-less state that supports `thought_mean` only."""
        return cls(**{name: inputs[name] for name in cls.THOUGHT_FIELDS})


def select_cache(cache: DynamicCache, rows: torch.Tensor, cache_config) -> DynamicCache:
    """A new cache holding the prefix K/V of `rows` (repeats allowed); the original is never appended to."""
    data = [(layer.keys[rows], layer.values[rows]) for layer in cache.layers]
    return DynamicCache(ddp_cache_data=data, config=cache_config)


def repeat_cache(cache: DynamicCache, repeats: int, cache_config) -> DynamicCache:
    rows = torch.arange(cache.layers[0].keys.shape[0], device=cache.layers[0].keys.device)
    return select_cache(cache, rows.repeat_interleave(repeats), cache_config)


def select_prefix(prefix: PrefixState, rows: torch.Tensor, cache_config) -> PrefixState:
    """The PrefixState of `rows` [n] of `prefix` (repeats allowed, any order)."""
    selected = {name: value[rows] if isinstance(value, torch.Tensor) else value for name, value in vars(prefix).items()}
    if prefix.cache is not None:
        selected["cache"] = select_cache(prefix.cache, rows, cache_config)
    return PrefixState(**selected)


def split_prefix(prefix: PrefixState) -> list[dict[str, Any]]:
    """Each row of `prefix` on its own, padding removed (tensors without the batch dimension, the KV cache as
    per-layer (keys, values)): the form a `PrefixCache` stores and `stack_prefixes` batches again."""
    rows = []
    for b in range(prefix.batch_size):
        keep = prefix.state_mask[b]
        new_column = keep.long().cumsum(0) - 1  # the index fields point into the unpadded states
        row = {"execution_path": prefix.execution_path, "states": prefix.states[b, keep],
               "state_mask": prefix.state_mask[b, keep],
               "state_positions": prefix.state_positions[b, keep], "query_index": new_column[prefix.query_index[b]]}
        if prefix.cache is not None:
            real = prefix.prefix_mask[b]
            suffix = prefix.suffix_mask[b]
            row.update(cache=[(layer.keys[b][:, real], layer.values[b][:, real]) for layer in prefix.cache.layers],
                       prefix_mask=prefix.prefix_mask[b, real], prefix_sum=prefix.prefix_sum[b],
                       prefix_weight=prefix.prefix_weight[b],
                       suffix_ids=prefix.suffix_ids[b, suffix], suffix_mask=prefix.suffix_mask[b, suffix],
                       suffix_positions=prefix.suffix_positions[b, suffix])
        if prefix.input_ids is not None:  # reference path: the prompt lines up with the states
            row.update(input_ids=prefix.input_ids[b, keep], attention_mask=prefix.attention_mask[b, keep],
                       thought_index=new_column[prefix.thought_index[b]])
        rows.append(row)
    return rows


def stack_prefixes(rows: Sequence[dict[str, Any]], pad_token_id: int, cache_config) -> PrefixState:
    """One PrefixState from `split_prefix` rows of one execution path: prompts padded on the left, suffixes on the right
    (positions are explicit, so the function is the same as for the batch the rows came from)."""
    def pad(name, value=0, side="left"):
        return pad_sequence([row[name] for row in rows], batch_first=True, padding_value=value, padding_side=side)

    shift = pad("states").shape[1] - torch.tensor([len(row["states"]) for row in rows])
    shift = shift.to(rows[0]["query_index"].device)[:, None]
    fields = {"execution_path": rows[0]["execution_path"], "states": pad("states"),
              "state_mask": pad("state_mask", False),
              "state_positions": pad("state_positions"),
              "query_index": torch.stack([row["query_index"] for row in rows]) + shift}
    if "cache" in rows[0]:
        # keys / values [H, P, D] per row: pad along P, then back to [B, H, P, D]
        layers = [
            tuple(pad_sequence([row["cache"][layer][part].transpose(0, 1) for row in rows], batch_first=True,
                               padding_side="left").transpose(1, 2)
                  for part in (0, 1))
            for layer in range(len(rows[0]["cache"]))
        ]
        fields.update(cache=DynamicCache(ddp_cache_data=layers, config=cache_config),
                      prefix_mask=pad("prefix_mask", False),
                      prefix_sum=torch.stack([row["prefix_sum"] for row in rows]),
                      prefix_weight=torch.stack([row["prefix_weight"] for row in rows]),
                      suffix_ids=pad("suffix_ids", pad_token_id, "right"),
                      suffix_mask=pad("suffix_mask", False, "right"),
                      suffix_positions=pad("suffix_positions", side="right"))
    if "input_ids" in rows[0]:
        fields.update(input_ids=pad("input_ids", pad_token_id), attention_mask=pad("attention_mask"),
                      thought_index=torch.stack([row["thought_index"] for row in rows]) + shift)
    return PrefixState(**fields)
