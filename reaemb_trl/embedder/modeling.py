"""LatentReasoningEmbedder: an LLM (or BERT-family encoder) plus a thought module, turning item text into one vector.

Two execution paths share one set of weights (docs/method.md, section 2):

- ``reference``: pass 1 over the whole prompt without gradient (thought positions hold the thought-token
  embeddings), the thought module turns its final states into r_k, pass 2 runs the whole prompt again with r_k
  injected as the input embeddings at the thought positions, and pools its final states.
- ``fast`` (decoders): in a causal model the states before the first thought p_1 do not depend on anything after
  it, so one prefix pass [0, p_1) serves as pass 1 *and* as pass 2's prefix. It keeps its KV cache; the thought
  module reads the prefix states detached (= the gradient-free pass 1); pass 2 runs only the thoughts and the tokens
  after them on that cache. Every pooling mode reuses the prefix states: pass 1 stores their weighted sum and weight
  total under the mode (`PrefixState.prefix_sum` / `prefix_weight`, zero for modes that pool only from the thought
  on, such as `thought` and `last`) and pass 2 adds the suffix's. Same function, fewer FLOPs.

Encoders are bidirectional and always run ``reference``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from peft import PeftModel
from torch import nn
from transformers import AutoConfig, AutoModel, GenerationConfig, PreTrainedModel
from transformers.utils import ModelOutput

from ..errors import InputError
from .configuration import LatentReasoningConfig
from .construction import build_from_backbone, load_from_folder
from .loading import LoadingOptions
from .pooling import pool, pool_weights, true_positions
from .prefix_cache import PrefixCache
from .prefix_state import PrefixState, repeat_cache, select_prefix, split_prefix, stack_prefixes
from .prompts import PromptBuilder, pad_prompts, thought_columns
from .serialization import save_embedder_folder
from .shared_pass import length_batches
from .thought_module import ThoughtModule

EXECUTION_PATHS = ("fast", "reference")  # how pass 1 and pass 2 run (docs/method.md)

AutoConfig.register(LatentReasoningConfig.model_type, LatentReasoningConfig, exist_ok=True)


@dataclass
class EmbedderOutput(ModelOutput):
    embeddings: torch.Tensor | None = None  # [B, d]
    thought_means: torch.Tensor | None = None  # [B, j, d], the thought module's output r
    prefix: PrefixState | None = None


def _per_sample(rows: torch.Tensor, group_size: int) -> torch.Tensor:
    """Each item's row repeated for its G samples: row b*G + g belongs to sample g of item b."""
    return rows.repeat_interleave(group_size, 0)


def _inject(embeds: torch.Tensor, index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Out-of-place: `embeds[b, index[b, k]] = values[b, k]`, differentiable in both."""
    rows = torch.arange(embeds.shape[0], device=embeds.device)[:, None].expand_as(index)
    return embeds.index_put((rows, index), values.to(embeds.dtype))


class LatentReasoningEmbedder(PreTrainedModel):
    """Backbone + thought module + j learned thought-token embeddings; see the module docstring for the paths.

    Built with `from_backbone` or `from_pretrained`; `__init__` only creates the thought weights and runs
    `post_init()`, and the (PEFT) backbone is attached afterwards, because `post_init()` re-initialises submodules
    that were not loaded from a checkpoint, LoRA weights included.

    The thought-token embeddings [j, d] are a parameter of their own (so QLoRA's `prepare_model_for_kbit_training`,
    which freezes the backbone's input embeddings, does not touch them) and sit at the thought positions in pass 1.
    Pass 1 is gradient-free, as in the method's latent-reasoning pass, so no gradient can reach them: they are saved
    and loaded but frozen (a parameter that never receives a gradient would also break DDP). On a decoder with j = 1
    they do not change the embedding at all (nothing before the thought sees it); they matter for j > 1 and encoders.
    """

    config_class = LatentReasoningConfig
    base_model_prefix = "backbone"
    main_input_name = "input_ids"

    def __init__(self, config: LatentReasoningConfig):
        super().__init__(config)
        self.thought_module = ThoughtModule(config.hidden_size, config.rope_base)
        self.thought_embeddings = nn.Parameter(torch.zeros(config.num_thought_tokens, config.hidden_size),
                                               requires_grad=False)
        self.post_init()

    @property
    def _no_split_modules(self) -> set[str]:
        # post_init() collects the children's lists before the backbone is attached, so the backbone's (its decoder
        # layer class) is read live: FSDP's transformer wrap policy and device maps then keep each layer whole.
        own = self.__dict__.get("_own_no_split_modules", set())
        if "backbone" not in self._modules:
            return set(own)
        return set(own) | set(getattr(self.backbone_model, "_no_split_modules", None) or ())

    @_no_split_modules.setter
    def _no_split_modules(self, value) -> None:
        self.__dict__["_own_no_split_modules"] = set(value or ())

    def _init_weights(self, module):
        # The thought module is initialised by `from_backbone` (it needs the backbone) or loaded by `from_pretrained`.
        pass

    def _attach(self, backbone, tokenizer) -> None:
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.thought_token_ids = tokenizer.convert_tokens_to_ids(list(self.config.thought_tokens))
        self.set_max_length(self.config.max_length)
        backbone_generation = getattr(self.backbone_model, "generation_config", None)
        self.generation_config = copy.deepcopy(backbone_generation) if backbone_generation else GenerationConfig()

    # ----------------------------------------------------------------------------------------------- construction
    @classmethod
    def from_backbone(cls, model_or_path, options: LoadingOptions | None = None, tokenizer=None,
                      backbone_name_or_path: str | None = None) -> "LatentReasoningEmbedder":
        """Wrap a backbone given as a bundled name (`bundled-smollm2`, `bundled-minilm`), a folder (with
        `options.gguf_file` for a GGUF checkpoint in it) or hub id (loaded here), or as a model object (adopted, not
        copied), built as `options` (`LoadingOptions`, the one set of loading options; default: a plain embedder) say.

        A model built in memory needs `tokenizer`, and `backbone_name_or_path` (a folder it was saved to) before
        `save_pretrained` can write a reloadable folder; quantisation and `dtype` apply when loading from a path.
        `options.model_revision`, `attn_implementation` and `trust_remote_code` are saved, so `from_pretrained`
        loads the backbone the same way.
        """
        return build_from_backbone(cls, model_or_path, options, tokenizer, backbone_name_or_path)

    @torch.no_grad()
    def _value_scale(self) -> float:
        """Mean input-embedding norm / mean final-state norm, measured on one short prompt."""
        batch = pad_prompts(self.prompts.build(["item"]), self.tokenizer.pad_token_id, self.config.padding_side)
        device = self.thought_embeddings.device
        hidden, _ = self._body_forward(self._embed(batch["input_ids"].to(device)), batch["attention_mask"].to(device),
                                       true_positions(batch["attention_mask"]).to(device))
        embed_norm = self.backbone.get_input_embeddings().weight.float().norm(dim=-1).mean()
        return float(embed_norm / hidden.float().norm(dim=-1).mean())

    def set_max_length(self, max_length: int) -> None:
        """Change the prompt length limit (saved in config.json); InputError if it leaves no room for the text or
        exceeds the backbone's positions."""
        position_limit = getattr(self.backbone_model.config.get_text_config(), "max_position_embeddings", None)
        if position_limit and max_length > position_limit:
            raise InputError(f"max_length={max_length} exceeds the backbone's {position_limit} positions")
        self.prompts = PromptBuilder(self.tokenizer, self.config.instruction, self.thought_token_ids, max_length,
                                     self.config.system_prompt)
        self.config.max_length = max_length

    # ---------------------------------------------------------------------------------------------- backbone access
    @property
    def backbone_model(self):
        """The transformers model (AutoModelForCausalLM / AutoModel), unwrapped from peft; LM head reachable."""
        return self.backbone.get_base_model() if isinstance(self.backbone, PeftModel) else self.backbone

    def _body(self):
        return self.backbone_model.base_model

    def _embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.backbone_model.get_input_embeddings()(input_ids)

    def _body_forward(self, inputs_embeds, attention_mask, position_ids, cache=None, use_cache=False):
        """Final hidden states (and the KV cache for decoders) of one backbone pass."""
        kwargs = {"inputs_embeds": inputs_embeds, "attention_mask": attention_mask.long(), "position_ids": position_ids}
        if self.config.is_causal:
            kwargs.update(cache=cache, use_cache=use_cache or cache is not None)
        out = self._body()(**kwargs)
        return out.last_hidden_state, getattr(out, "cache", None)

    def select_prefix(self, prefix: PrefixState, rows: torch.Tensor) -> PrefixState:
        """The PrefixState of `rows` [n] of `prefix` (repeats allowed, any order), e.g. one row per sample when each
        item's prefix was encoded once; pass 2 on it costs no prefix pass."""
        return select_prefix(prefix, rows, self._body().config)

    @torch.no_grad()
    def encode_prefix_cached(self, prompts: Sequence[Sequence[int]], prefix_cache: PrefixCache,
                             execution_path: str | None = None) -> PrefixState:
        """Pass 1 of `prompts` (token ids, as `prompts.build` makes them) without gradient, taken from `prefix_cache`
        where it holds them; the others are computed and stored. Exact only while the backbone does not change."""
        execution_path = self.resolve_execution_path(execution_path)
        keys = [(execution_path, tuple(ids)) for ids in prompts]
        found = {key: prefix_cache.get(key) for key in dict.fromkeys(keys)}
        missing = [key for key, row in found.items() if row is None]
        if missing:
            device = self.thought_embeddings.device
            batch = pad_prompts([list(key[1]) for key in missing], self.tokenizer.pad_token_id,
                                self.config.padding_side)
            computed = self.encode_prefix(batch["input_ids"].to(device), batch["attention_mask"].to(device),
                                          execution_path)
            for key, row in zip(missing, split_prefix(computed)):
                found[key] = row
                prefix_cache.put(key, row)
        return stack_prefixes([found[key] for key in keys], self.tokenizer.pad_token_id, self._body().config)

    def resolve_execution_path(self, execution_path: str | None) -> str:
        """The execution path a call runs: the one asked for, else fast; encoders always run reference."""
        if execution_path is not None and execution_path not in EXECUTION_PATHS:
            raise InputError(f"execution_path must be one of {EXECUTION_PATHS}, got {execution_path!r}")
        if not self.config.is_causal:
            return "reference"
        return execution_path or "fast"

    # --------------------------------------------------------------------------------------------------- pass 1
    def encode_prefix(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      execution_path: str | None = None) -> PrefixState:
        """Pass 1. Fast: the prefix pass (with gradient if enabled: it is also pass 2's prefix) keeping its cache."""
        thought_index = thought_columns(input_ids, attention_mask, self.thought_token_ids,
                                        self.config.num_thought_tokens)
        if self.resolve_execution_path(execution_path) == "reference":
            return self._reference_prefix(input_ids, attention_mask, thought_index)
        return self._fast_prefix(input_ids, attention_mask, thought_index)

    def _reference_prefix(self, input_ids, attention_mask, thought_index) -> PrefixState:
        mask = attention_mask.bool()
        positions = true_positions(mask)
        with torch.no_grad():
            thoughts = self.thought_embeddings.expand(input_ids.shape[0], -1, -1)
            embeds = _inject(self._embed(input_ids), thought_index, thoughts)
            hidden, _ = self._body_forward(embeds, mask, positions)
        return PrefixState(states=hidden, state_mask=mask, state_positions=positions, query_index=thought_index - 1,
                           execution_path="reference", input_ids=input_ids, attention_mask=attention_mask,
                           thought_index=thought_index)

    def _fast_prefix(self, input_ids, attention_mask, thought_index) -> PrefixState:
        batch, width = input_ids.shape
        j = self.config.num_thought_tokens
        mask = attention_mask.bool()
        columns = torch.arange(width, device=input_ids.device)
        first_thought = thought_index[:, 0]
        prefix_width = int(first_thought.max())
        # With right padding a shorter row's own thoughts and suffix sit inside [0, prefix_width): mask them out.
        prefix_mask = mask[:, :prefix_width] & (columns[:prefix_width] < first_thought[:, None])
        prefix_positions = true_positions(prefix_mask)
        prefix_length = prefix_mask.sum(1)
        hidden, cache = self._body_forward(self._embed(input_ids[:, :prefix_width]), prefix_mask, prefix_positions,
                                           use_cache=True)

        suffix_length = (mask & (columns >= first_thought[:, None])).sum(1)
        offsets = torch.arange(int(suffix_length.max()), device=input_ids.device)
        suffix_columns = (first_thought[:, None] + offsets).clamp(max=width - 1)
        suffix_mask = offsets < suffix_length[:, None]
        suffix_ids = input_ids.gather(1, suffix_columns).masked_fill(~suffix_mask, self.tokenizer.pad_token_id)
        suffix_positions = prefix_length[:, None] + offsets

        states, state_mask, state_positions = hidden.detach(), prefix_mask, prefix_positions
        query_index = (first_thought - 1)[:, None]
        if j > 1:
            # Pass-1 states at thoughts 1..j-1 (their learned embeddings as input), on a copy of the cache.
            extra = torch.arange(j - 1, device=input_ids.device)
            with torch.no_grad():
                thought_states, _ = self._body_forward(
                    self.thought_embeddings[: j - 1].expand(batch, -1, -1).to(hidden.dtype),
                    torch.cat([prefix_mask, prefix_mask.new_ones(batch, j - 1)], 1),
                    prefix_length[:, None] + extra,
                    cache=repeat_cache(cache, 1, self._body().config),
                )
            states = torch.cat([states, thought_states], 1)
            state_mask = torch.cat([state_mask, state_mask.new_ones(batch, j - 1)], 1)
            state_positions = torch.cat([state_positions, prefix_length[:, None] + extra], 1)
            query_index = torch.cat([query_index, (prefix_width + extra).expand(batch, -1)], 1)
        weights = pool_weights(self.config.pooling, prefix_mask, prefix_positions, thought_start=prefix_width)
        weights = weights.to(hidden.dtype)
        prefix_sum = (hidden * weights[..., None]).sum(1)
        return PrefixState(states=states, state_mask=state_mask, state_positions=state_positions,
                           query_index=query_index, execution_path="fast", cache=cache, prefix_mask=prefix_mask,
                           prefix_sum=prefix_sum, prefix_weight=weights.sum(1), suffix_ids=suffix_ids,
                           suffix_mask=suffix_mask,
                           suffix_positions=suffix_positions)

    def thought_mean(self, prefix: PrefixState) -> torch.Tensor:
        """r = the thought module's output [B, j, d]; gradient flows into the thought module only."""
        return self.thought_module(prefix.states, prefix.state_mask, prefix.state_positions, prefix.query_index)

    # --------------------------------------------------------------------------------------------------- pass 2
    def _suffix_pass(self, prefix: PrefixState, thoughts: torch.Tensor, group_size: int) -> torch.Tensor:
        """Fast pass 2: thoughts + following tokens on the repeated prefix cache -> suffix states [B*G, S, d]."""
        j = thoughts.shape[1]
        embeds = self._embed(_per_sample(prefix.suffix_ids, group_size))
        embeds = torch.cat([thoughts.to(embeds.dtype), embeds[:, j:]], 1)
        attention = _per_sample(torch.cat([prefix.prefix_mask, prefix.suffix_mask], 1), group_size)
        hidden, _ = self._body_forward(embeds, attention, _per_sample(prefix.suffix_positions, group_size),
                                       cache=repeat_cache(prefix.cache, group_size, self._body().config))
        return hidden

    def _full_pass(self, input_ids, attention_mask, thought_index, thoughts, group_size: int) -> torch.Tensor:
        """Reference pass 2: the whole prompt with the thoughts injected -> states [B*G, T, d]."""
        input_ids, attention_mask, thought_index = (_per_sample(t, group_size)
                                                    for t in (input_ids, attention_mask, thought_index))
        embeds = _inject(self._embed(input_ids), thought_index, thoughts)
        hidden, _ = self._body_forward(embeds, attention_mask, true_positions(attention_mask))
        return hidden

    def _check_pass2(self, prefix: PrefixState, thoughts: torch.Tensor, group_size: int) -> None:
        if prefix.cache is None and prefix.input_ids is None:
            raise ValueError("this PrefixState holds only the thought inputs: build a full one with encode_prefix()")
        expected = (prefix.batch_size * group_size, self.config.num_thought_tokens, self.config.hidden_size)
        if tuple(thoughts.shape) != expected:
            raise ValueError(f"thoughts must have shape {expected} (batch * group_size, j, d), "
                             f"got {tuple(thoughts.shape)}")

    def embed_with_thoughts(self, prefix: PrefixState, thoughts: torch.Tensor, group_size: int = 1) -> torch.Tensor:
        """Pass 2 for thoughts [B*G, j, d] (row b*G + g = sample g of item b) -> embeddings [B*G, d]."""
        self._check_pass2(prefix, thoughts, group_size)
        if prefix.cache is None:
            hidden = self._full_pass(prefix.input_ids, prefix.attention_mask, prefix.thought_index, thoughts,
                                     group_size)
            return pool(self.config.pooling, hidden, _per_sample(prefix.attention_mask, group_size),
                        _per_sample(prefix.thought_index, group_size))
        hidden = self._suffix_pass(prefix, thoughts, group_size)
        weights = pool_weights(self.config.pooling, _per_sample(prefix.suffix_mask, group_size),
                               _per_sample(prefix.suffix_positions, group_size), 0)
        weights = weights.to(hidden.dtype)
        total = _per_sample(prefix.prefix_sum, group_size) + (hidden * weights[..., None]).sum(1)
        return total / (_per_sample(prefix.prefix_weight, group_size) + weights.sum(1))[:, None]

    def suffix_token_logprobs(self, prefix: PrefixState, thoughts: torch.Tensor, group_size: int = 1) -> torch.Tensor:
        """[B*G, T] log-probs under the LM head of the real tokens after the last thought (0 at padding)."""
        self._check_pass2(prefix, thoughts, group_size)
        lm_head = self.backbone_model.get_output_embeddings()
        if lm_head is None or not self.config.is_causal:
            raise ValueError("suffix_token_logprobs needs a causal backbone with an LM head")
        j = self.config.num_thought_tokens
        if prefix.cache is not None:
            hidden = self._suffix_pass(prefix, thoughts, group_size)
            targets = _per_sample(prefix.suffix_ids, group_size)[:, j:]
            valid = _per_sample(prefix.suffix_mask, group_size)[:, j:]
            predictors = hidden[:, j - 1 : -1]
        else:
            hidden = self._full_pass(prefix.input_ids, prefix.attention_mask, prefix.thought_index, thoughts,
                                     group_size)
            input_ids = _per_sample(prefix.input_ids, group_size)
            mask = _per_sample(prefix.attention_mask.bool(), group_size)
            last_thought = _per_sample(prefix.thought_index[:, -1], group_size)
            columns = torch.arange(input_ids.shape[1], device=input_ids.device)
            tail_length = (mask & (columns > last_thought[:, None])).sum(1)
            offsets = torch.arange(int(tail_length.max()), device=input_ids.device)
            predictor_columns = (last_thought[:, None] + offsets).clamp(max=input_ids.shape[1] - 2)
            valid = offsets < tail_length[:, None]
            targets = input_ids.gather(1, predictor_columns + 1)
            predictors = hidden.gather(1, predictor_columns[..., None].expand(-1, -1, hidden.shape[-1]))
        logprobs = lm_head(predictors).float().log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1)
        return logprobs * valid

    # ------------------------------------------------------------------------------------------------ public API
    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                execution_path: str | None = None, use_thought: bool | None = None,
                thought_inputs: dict[str, torch.Tensor] | None = None, **unused) -> EmbedderOutput:
        """Embeddings of tokenized prompts. `use_thought=False` is the no-latent-reasoning ablation: one plain pass
        with the thought-token embeddings at the thought positions; None = `config.use_thought`.

        With `thought_inputs` (a `PrefixState.thought_inputs()`, e.g. from a trainer's buffer) and no prompts, only
        the thought module runs, without any backbone pass: returns `thought_means` alone. Policy-gradient trainers
        call this through their (DDP) model wrapper so that the gradient of the thought module is synchronised.
        """
        if thought_inputs is not None:
            if input_ids is not None:
                raise ValueError("pass either prompts (input_ids, attention_mask) or thought_inputs, not both")
            return EmbedderOutput(thought_means=self.thought_mean(PrefixState.from_thought_inputs(thought_inputs)))
        if input_ids is None or attention_mask is None:
            raise ValueError("forward needs input_ids and attention_mask (or thought_inputs)")
        if not (self.config.use_thought if use_thought is None else use_thought):
            thought_index = thought_columns(input_ids, attention_mask, self.thought_token_ids,
                                            self.config.num_thought_tokens)
            thoughts = self.thought_embeddings.expand(input_ids.shape[0], -1, -1)
            hidden = self._full_pass(input_ids, attention_mask, thought_index, thoughts, 1)
            return EmbedderOutput(embeddings=pool(self.config.pooling, hidden, attention_mask, thought_index))
        prefix = self.encode_prefix(input_ids, attention_mask, execution_path)
        thought_means = self.thought_mean(prefix)
        embeddings = self.embed_with_thoughts(prefix, thought_means)
        return EmbedderOutput(embeddings=embeddings, thought_means=thought_means, prefix=prefix)

    def tokenize(self, texts: Sequence[str], padding_side: str | None = None) -> dict[str, torch.Tensor]:
        """Prompts for `texts`, padded: input_ids and attention_mask [B, T] (cpu), thought tokens placed."""
        side = padding_side or self.config.padding_side
        return pad_prompts(self.prompts.build(texts), self.tokenizer.pad_token_id, side)

    @torch.no_grad()
    def sample_group(self, prefix: PrefixState, group_size: int, sigma: float, noise_free_first: bool = True,
                     generator: torch.Generator | None = None,
                     antithetic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """G Gaussian thought samples per item, mu.detach() + sigma * eps (sample 0 noise-free if asked), and their
        embeddings: (thoughts [B*G, j, d], embeddings [B*G, d]). Runs without gradient. `antithetic`: the noisy
        samples of a group come in mirrored pairs eps, -eps (the k-th of the first half and the k-th of the second);
        with an odd number of noisy samples the last is an independent draw."""
        mu = self.thought_mean(prefix)
        thoughts = _per_sample(mu, group_size)
        noise_device = generator.device if generator is not None else mu.device
        noise = torch.randn(thoughts.shape, generator=generator, device=noise_device, dtype=mu.dtype).to(mu.device)
        grouped = noise.view(prefix.batch_size, group_size, *mu.shape[1:])
        first = int(noise_free_first)
        grouped[:, :first] = 0
        if antithetic:
            half = (group_size - first) // 2
            grouped[:, first + half:first + 2 * half] = -grouped[:, first:first + half]
        thoughts = thoughts + sigma * noise
        return thoughts, self.embed_with_thoughts(prefix, thoughts, group_size)

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 32, execution_path: str | None = None,
               show_progress: bool = True, use_thought: bool | None = None,
               prefix_cache: PrefixCache | None = None) -> torch.Tensor:
        """Embeddings [len(texts), d] (float32, cpu) in eval mode; batches are built by prompt length.
        `use_thought` None = `config.use_thought`. With a `prefix_cache` (valid while the backbone is frozen) pass 1
        of a prompt seen before is reused."""
        with_thought = self.config.use_thought if use_thought is None else use_thought
        prompts = self.prompts.build(texts)
        result = torch.empty(len(prompts), self.config.hidden_size, dtype=torch.float32)
        device = self.thought_embeddings.device
        was_training = self.training
        self.eval()
        try:
            for rows in length_batches(prompts, batch_size, show_progress):
                if prefix_cache is not None and with_thought:
                    prefix = self.encode_prefix_cached([prompts[i] for i in rows], prefix_cache, execution_path)
                    embeddings = self.embed_with_thoughts(prefix, self.thought_mean(prefix))
                else:
                    batch = pad_prompts([prompts[i] for i in rows], self.tokenizer.pad_token_id,
                                        self.config.padding_side)
                    embeddings = self(**{k: v.to(device) for k, v in batch.items()}, execution_path=execution_path,
                                      use_thought=use_thought).embeddings
                result[rows] = embeddings.float().cpu()
        finally:
            self.train(was_training)
        return result

    def merge_lora(self) -> "LatentReasoningEmbedder":
        """Merge LoRA into the backbone weights for speed; the adapter weights stay, so `save_pretrained` still
        writes the small adapter and the folder reloads to the same function. Do not train LoRA after merging."""
        if isinstance(self.backbone, PeftModel):
            self.backbone.merge_adapter()
        return self

    # ----------------------------------------------------------------------------------------------- save / load
    def save_pretrained(self, save_directory, state_dict=None, safe_serialization=None, relative_backbone: bool = False,
                        **unused) -> None:
        """Write config.json, tokenizer files, thought_module.safetensors, adapter/ (when LoRA is used), and
        modules.json + config_sentence_transformers.json (the folder loads in sentence-transformers).

        A backbone loaded from a local folder is recorded by its absolute path, unless `relative_backbone`: then by
        its path relative to the saved folder, so that the two folders can move together to another machine.
        Bundled names and Hub ids are recorded as they are.

        `state_dict` / `safe_serialization` (passed by HF Trainer / TRL) are ignored: the backbone is stored by
        reference and only the small trained parts are written. Everything is written to a staging folder first and
        each entry then renamed into place (config.json last); other files in the folder (a trainer's checkpoints,
        logs) are kept.
        """
        save_embedder_folder(self, save_directory, relative_backbone)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *, is_trainable: bool = False, dtype: Any = None,
                        revision: str | None = None, cache_dir: str | None = None,
                        **unused) -> "LatentReasoningEmbedder":
        """Inverse of `save_pretrained`: reloads the backbone from `backbone_name_or_path`, the adapter (trainable if
        `is_trainable`), the thought module and thought-token embeddings, and the tokenizer. A name that is not a
        local folder is a Hub id: its `revision` is fetched (or, offline, taken from the Hub cache)."""
        return load_from_folder(cls, pretrained_model_name_or_path, is_trainable, dtype, revision, cache_dir)


AutoModel.register(LatentReasoningConfig, LatentReasoningEmbedder, exist_ok=True)

__all__ = ["EmbedderOutput", "LatentReasoningEmbedder"]
