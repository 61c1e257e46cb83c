"""Item prompts: instruction + item text (chat-formatted where the tokenizer has a template), thought tokens, EOS;
and the check that a padded batch holds that layout (`thought_columns`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from ..errors import InputError

logger = logging.getLogger(__name__)

_TEXT_MARKER = "\x00ITEM_TEXT\x00"


class PromptBuilder:
    """Token layout of one item: head ids, text ids (truncated to fit), tail ids, j thought ids, end id.

    With a chat template, head/tail come from rendering one user message "instruction\\ntext" (after
    `system_prompt` as a system message, if given) with the generation prompt and splitting it around the text.
    Without one: [BOS or CLS] instruction, text, then the thoughts and [EOS or SEP]. The text is tokenized on its
    own, so truncation cuts only the text; thoughts and end always stay.
    """

    def __init__(self, tokenizer, instruction: str, thought_token_ids: Sequence[int], max_length: int,
                 system_prompt: str | None = None):
        self.tokenizer = tokenizer
        self.thought_token_ids = list(thought_token_ids)
        self.max_length = max_length
        end_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
        if end_id is None:
            raise InputError("the tokenizer has neither an EOS nor a SEP token to end the prompt with")
        self.end_ids = [end_id]
        if getattr(tokenizer, "chat_template", None):
            system = [] if system_prompt is None else [{"role": "system", "content": system_prompt}]
            rendered = tokenizer.apply_chat_template(
                [*system, {"role": "user", "content": f"{instruction}\n{_TEXT_MARKER}"}],
                tokenize=False, add_generation_prompt=True,
            )
            head, tail = rendered.split(_TEXT_MARKER)
            self.head_ids = self._ids(head)
            self.tail_ids = self._ids(tail)
        else:
            start_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
            self.head_ids = ([start_id] if start_id is not None else []) + self._ids(instruction)
            self.tail_ids = []
        fixed = len(self.head_ids) + len(self.tail_ids) + len(self.thought_token_ids) + len(self.end_ids)
        self.text_budget = max_length - fixed
        if self.text_budget < 1:
            raise InputError(f"max_length={max_length} leaves no room for the item text "
                             f"(the prompt frame takes {fixed} tokens)")
        self._warned_truncation = False

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def build(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of every prompt; empty texts are refused, long texts truncated (warned about once per builder:
        trainers call this every step)."""
        for index, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise InputError(f"item text at index {index} is empty (got {text!r})")
        text_ids = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        truncated = sum(len(ids) > self.text_budget for ids in text_ids)
        if truncated and not self._warned_truncation:
            self._warned_truncation = True
            logger.warning("%d of %d item texts exceed max_length=%d and were truncated to %d text tokens "
                           "(warned once; later calls truncate silently)",
                           truncated, len(texts), self.max_length, self.text_budget)
        frame_end = self.tail_ids + self.thought_token_ids + self.end_ids
        return [self.head_ids + ids[: self.text_budget] + frame_end for ids in text_ids]


def pad_prompts(prompts: Sequence[Sequence[int]], pad_id: int, padding_side: str) -> dict[str, torch.Tensor]:
    """Pad to the longest prompt: input_ids and attention_mask as [B, T] int64 tensors."""
    width = max(len(ids) for ids in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, ids in enumerate(prompts):
        cols = slice(width - len(ids), width) if padding_side == "left" else slice(0, len(ids))
        input_ids[row, cols] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, cols] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def thought_columns(input_ids: torch.Tensor, attention_mask: torch.Tensor, thought_token_ids: Sequence[int],
                    num_thought_tokens: int) -> torch.Tensor:
    """[B, j] columns of the thought tokens in a padded batch of prompts; checks the layout `PromptBuilder` makes and
    both execution paths rely on (one block of real tokens, j consecutive thoughts in order after at least one real
    token), refusing any other batch by name."""
    j = num_thought_tokens
    mask = attention_mask.bool()
    padded = torch.nn.functional.pad(mask.long(), (1, 1))
    if ((padded[:, 1:] != padded[:, :-1]).sum(1) != 2).any():
        raise InputError("attention_mask: every row must hold one contiguous block of real tokens")
    ids = torch.tensor(thought_token_ids, device=input_ids.device)
    is_thought = (input_ids[..., None] == ids).any(-1) & mask
    counts = is_thought.sum(1)
    if (counts != j).any():
        row = int((counts != j).nonzero()[0])
        raise InputError(f"input_ids row {row}: expected {j} thought token(s), found {int(counts[row])} "
                         "(build batches with tokenize())")
    index = is_thought.nonzero()[:, 1].view(-1, j)
    if (index[:, 1:] - index[:, :-1] != 1).any() or (input_ids.gather(1, index) != ids).any():
        raise InputError("input_ids: the thought tokens must be consecutive and in order")
    if not mask.gather(1, (index[:, :1] - 1).clamp(min=0)).all() or (index[:, 0] < 1).any():
        raise InputError("input_ids: every row needs at least one real token before the thoughts")
    return index
