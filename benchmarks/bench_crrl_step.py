"""One CRRL step, this trainer against the reference's pattern, measured in one run on one random-weight decoder.

    python benchmarks/bench_crrl_step.py --json --threads 1

This trainer: `EmbeddingGRPOTrainer.train()` on a synthetic catalogue (G samples per item, K candidates, exact
candidate cache `refresh_every=1`, one optimisation pass per generation). Its prefix cache keeps each prompt's pass 1
(the backbone is frozen), so once an epoch has passed, items and candidates cost only the thought module and pass 2:
`trainer` is the median step after the first epoch, `trainer_first_epoch` the median step of the first epoch (step 0
excluded), `trainer_no_prefix_cache` the same trainer with `prefix_cache_size=0`. `--refresh-every N` lets cached
candidate embeddings serve N steps. Reference pattern (the reference implementation's cost model): every sample runs
its own full two-pass (`execution_path="reference"`), every sample re-embeds its K candidates with a full two-pass,
and the loss takes the token log-probs of the whole prompt (old log-probs without gradient, new ones with), then one
optimiser step. `items_per_s` counts catalogue items (a group of G samples is one item); `speedup` = this trainer /
reference, for each trainer setting.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_embedder  # noqa: E402  (model settings, CPU name, timing helpers, the word list)
import numpy as np  # noqa: E402
import scipy.sparse  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from transformers import PrinterCallback, TrainerCallback  # noqa: E402

from reaemb_trl.crrl import CooccurrenceRewardModel, CRRLConfig, EmbeddingGRPOTrainer, item_dataset  # noqa: E402
from reaemb_trl.crrl.policy import group_advantages, reduce_per_token, surrogate_loss  # noqa: E402
from reaemb_trl.embedder import LatentReasoningEmbedder  # noqa: E402
from reaemb_trl.embedder.loading import LoadingOptions
from reaemb_trl.io_utils import sigterm_as_interrupt  # noqa: E402
from reaemb_trl.rewards import get_reward  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench_embedder.add_model_arguments(parser)
    parser.add_argument("--group", type=int, default=8, help="G thought samples per item.")
    parser.add_argument("--candidates", type=int, default=10, help="K candidates per item.")
    parser.add_argument("--items", type=int, default=8, help="Items per step of this trainer.")
    parser.add_argument("--reference-items", type=int, default=1, help="Items per step of the reference pattern.")
    parser.add_argument("--catalogue", type=int, default=400, help="Synthetic catalogue size.")
    parser.add_argument("--refresh-every", type=int, default=1,
                        help="This trainer's candidate-cache refresh interval in steps (1 = exact, every step).")
    parser.add_argument("--steps", type=int, default=8,
                        help="Timed steps of this trainer after its first epoch (and of the run without prefix cache).")
    parser.add_argument("--repeats", type=int, default=1, help="Timed reference steps (after one warm-up step).")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice).")
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    return parser.parse_args(argv)


def synthetic_catalogue(size: int, prompt_length: int, seed: int = 0):
    """Item texts (index 0 = padding) and a symmetric co-occurrence matrix: each item co-occurs with 1-3 others."""
    rng = random.Random(seed)
    texts = [""] + [" ".join(rng.choice(bench_embedder.WORDS) for _ in range(4 * prompt_length))
                    for _ in range(size)]
    rows, cols, counts = [], [], []
    for item in range(1, size + 1):
        for other in rng.sample(range(1, size + 1), 3)[: rng.randint(1, 3)]:
            if other != item:
                rows += [item, other]
                cols += [other, item]
                counts += [rng.randint(1, 5)] * 2
    cooc = scipy.sparse.csr_matrix((counts, (rows, cols)), shape=(size + 1, size + 1), dtype=np.float32)
    return texts, cooc


class StepTimer(TrainerCallback):
    def __init__(self):
        self.seconds, self._start = [], None

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds.append(time.perf_counter() - self._start)


def time_trainer(embedder, texts, cooc, args, workdir: Path, prefix_cache_size: int, epochs_before: int) -> dict:
    """Per-step seconds of `EmbeddingGRPOTrainer`: {"first_epoch": median of epoch 0 without step 0, "after": median
    of the `args.steps` steps that follow `epochs_before` epochs (or step 0)}."""
    reward_model = CooccurrenceRewardModel(cooc, num_candidates=args.candidates, item_texts=texts,
                                           refresh_every=args.refresh_every)
    train_items, _ = reward_model.split_items(0)
    steps_per_epoch = -(-len(train_items) // args.items)
    skipped = max(1, epochs_before * steps_per_epoch)
    config = CRRLConfig(output_dir=str(workdir), num_generations=args.group,
                        per_device_train_batch_size=args.items * args.group, num_iterations=1,
                        max_steps=skipped + args.steps, learning_rate=1e-4, warmup_steps=0, save_strategy="no",
                        logging_steps=10_000, report_to="none", use_cpu=True, disable_tqdm=True, seed=0,
                        num_candidates=args.candidates, refresh_every=args.refresh_every, encode_batch_size=32,
                        prefix_cache_size=prefix_cache_size, log_level="error")
    timer = StepTimer()
    trainer = EmbeddingGRPOTrainer(embedder, config, reward_model, item_dataset(train_items, texts),
                                   callbacks=[timer])
    trainer.remove_callback(PrinterCallback)  # stdout carries the JSON only
    trainer.train()
    return {"first_epoch": statistics.median(timer.seconds[1:steps_per_epoch]),
            "after": statistics.median(timer.seconds[skipped:])}


def reference_step(embedder, optimizer, texts, cooc, args, generator: torch.Generator):
    """One step of the reference's pattern for `args.reference_items` random items (see the module docstring)."""
    group, sigma = args.group, 0.1
    reward_model = CooccurrenceRewardModel(cooc, num_candidates=args.candidates, item_texts=texts)
    items = torch.randint(1, len(texts), (args.reference_items,), generator=generator)
    candidates = reward_model.candidates(0)
    candidate_ids = torch.from_numpy(candidates.item_ids[items.numpy()]).repeat_interleave(group, 0)  # per sample
    positive_weights = torch.from_numpy(candidates.weights[items.numpy()]).repeat_interleave(group, 0)
    positive_weights = positive_weights / positive_weights.sum(1, keepdim=True)
    samples = embedder.tokenize([texts[i] for i in items.tolist() for _ in range(group)])
    with torch.no_grad():
        prefix = embedder.encode_prefix(**samples, execution_path="reference")  # pass 1 for every sample
        noise = torch.randn(prefix.batch_size, embedder.config.num_thought_tokens, embedder.config.hidden_size,
                            generator=generator)
        thoughts = embedder.thought_mean(prefix) + sigma * noise
        embeddings = embedder.embed_with_thoughts(prefix, thoughts)  # pass 2 for every sample
        targets = embedder.encode([texts[i] for i in candidate_ids.flatten().tolist()], batch_size=32,
                                  execution_path="reference", show_progress=False).view(*candidate_ids.shape, -1)
        scores = torch.einsum("nd,nkd->nk", F.normalize(embeddings, dim=-1), F.normalize(targets, dim=-1))
        rewards = get_reward("cooc_ndcg")(scores, positive_weights)
        advantages = group_advantages(rewards, group, "group")
        old_logps = embedder.suffix_token_logprobs(prefix, thoughts)
    optimizer.zero_grad(set_to_none=True)
    with torch.no_grad():
        prefix = embedder.encode_prefix(**samples, execution_path="reference")
    logps = embedder.suffix_token_logprobs(prefix, embedder.thought_mean(prefix) + sigma * noise)
    loss, _ = surrogate_loss(reduce_per_token(logps - old_logps, "mean"), advantages, "grpo", 0.2, 0.28)
    loss.mean().backward()
    optimizer.step()


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.getLogger("reaemb_trl.embedder.prompts").setLevel(logging.ERROR)  # every text is truncated on purpose
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    model, tokenizer = bench_embedder.build_model(args)
    texts, cooc = synthetic_catalogue(args.catalogue, args.prompt_length)
    with tempfile.TemporaryDirectory() as workdir:
        workdir = Path(workdir)
        model.save_pretrained(workdir / "backbone")
        tokenizer.save_pretrained(workdir / "backbone")
        embedder = LatentReasoningEmbedder.from_backbone(str(workdir / "backbone"),
                                                         LoadingOptions(max_length=args.prompt_length,
                                                                        padding_side="left"))
        assert embedder.tokenize(texts[1:2])["input_ids"].shape[1] == args.prompt_length
        cached = time_trainer(embedder, texts, cooc, args, workdir / "cached", CRRLConfig.prefix_cache_size, 1)
        uncached = time_trainer(embedder, texts, cooc, args, workdir / "uncached", 0, 0)

        embedder.train()
        optimizer = torch.optim.AdamW([p for p in embedder.parameters() if p.requires_grad], lr=1e-4)
        generator = torch.Generator().manual_seed(0)
        reference_s = bench_embedder.median_seconds(
            lambda: reference_step(embedder, optimizer, texts, cooc, args, generator), device, args.repeats)

    step_s = {"trainer": cached["after"], "trainer_first_epoch": cached["first_epoch"],
              "trainer_no_prefix_cache": uncached["after"], "reference": reference_s}
    items = {name: args.reference_items if name == "reference" else args.items for name in step_s}
    items_per_s = {name: items[name] / seconds for name, seconds in step_s.items()}
    result = {
        "machine": bench_embedder.cpu_name(), "device": str(device), "torch_threads": torch.get_num_threads(),
        "model": {"hidden": args.hidden, "layers": args.layers, "heads": args.heads, "kv_heads": args.kv_heads,
                  "intermediate": model.config.intermediate_size},
        "prompt_length": args.prompt_length, "group": args.group, "candidates": args.candidates,
        "catalogue": args.catalogue, "refresh_every": args.refresh_every,
        "items_per_step": {"trainer": args.items, "reference": args.reference_items},
        "step_s": step_s,
        "items_per_s": items_per_s,
        "speedup": items_per_s["trainer"] / items_per_s["reference"],
        "speedup_first_epoch": items_per_s["trainer_first_epoch"] / items_per_s["reference"],
        "speedup_no_prefix_cache": items_per_s["trainer_no_prefix_cache"] / items_per_s["reference"],
    }
    bench_embedder.emit(result, args.json)
    return result


if __name__ == "__main__":
    with sigterm_as_interrupt():  # a scheduler's SIGTERM unwinds like Ctrl-C: temporary folders go
        main()
