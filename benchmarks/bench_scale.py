"""Catalogue scale: `prepare`, CRRL candidate sampling and `export` on synthetic power-law logs of growing size.

For each catalogue size (default 10k, 100k and 1M items, about 20 interactions per item) the script writes a raw
CSV log (Zipf item popularity, Pareto user lengths, every item at least once), then runs each step in a fresh
process and reports its seconds and peak resident memory:

    prepare     `reaemb-trl prepare --format csv`: reading, filtering, id mapping, item texts, co-occurrence
    candidates  `sample_candidates` on the prepared co-occurrence matrix (CRRL's defaults: 1 positive, 10 in all)
    export      `export_item_table` of every item with a tiny random decoder (safetensors)

plus the growth exponent between consecutive sizes, log(value ratio) / log(size ratio): 1 is linear. Prepare and
candidates work in row blocks sized by `--max-memory` (default: the library's, a quarter of the machine's memory),
so their peak stays near the budget while the catalogue grows. With `--baseline SRC` (another version's source
tree, e.g. `git archive COMMIT reaemb_trl | tar -x -C SRC`) both steps are measured a second time per size with that
version on PYTHONPATH, before this one, and `ratio_to_baseline` gives this version's figures over the baseline's. Export
streams its table in blocks, so its working memory (peak minus what the loaded dataset and model already hold) stays
flat while the catalogue grows; `table_mib` is what a whole table held in memory would have added. Memory is read
from /proc (Linux): `loaded_mib` is what a step's inputs leave resident, `working_mib` the step's own peak above that.

    python benchmarks/bench_scale.py --json [--sizes 10000 100000 1000000] [--output outputs/scale] \
        [--max-memory 4GiB] [--baseline SRC] [--steps prepare candidates export] [--note TEXT]

With --json the last stdout line is one JSON object (also written to OUTPUT/scale.json, with scale.md and
scale.png beside it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from bench_cooccurrence import synthetic_log  # beside this script

from reaemb_trl.embedder.loading import LoadingOptions
from reaemb_trl.io_utils import atomic_path, sigterm_as_interrupt, write_json

STEPS = ("prepare", "candidates", "export")
BASELINE_STEPS = ("prepare", "candidates")  # the steps whose memory the row blocks bound
WORDS = ("paper", "stapler", "blue", "black", "pen", "desk", "office", "printer", "ink", "folder", "binder", "label",
         "tape", "marker", "pack", "large", "small", "classic", "premium", "refill", "notebook", "envelope", "clip",
         "chair", "lamp", "storage", "box", "sheet", "letter", "card")
TINY_DECODER = {"arch": "llama", "hidden_size": 64, "num_layers": 2}


def _memory_mib(key: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process from /proc. Not ru_maxrss: a process started by fork + exec keeps
    there the peak of the parent it was forked from, and only VmHWM can be reset (`_reset_peak`)."""
    status = Path("/proc/self/status")
    if not status.is_file():
        raise RuntimeError("bench_scale.py reads memory from /proc/self/status (Linux)")
    line = next(line for line in status.read_text().splitlines() if line.startswith(f"{key}:"))
    return int(line.split()[1]) / 1024  # kB


def _reset_peak() -> None:
    """Start VmHWM again from the current resident size (Linux 4.0+), so that a step's own peak is measured after
    its inputs are loaded."""
    Path("/proc/self/clear_refs").write_text("5")


def _step_memory(loaded_peak: float, loaded: float) -> dict:
    """Peak of the whole process, what loading the inputs left resident, and what the step itself added on top."""
    step_peak = _memory_mib("VmHWM")
    return {"peak_mib": max(loaded_peak, step_peak), "loaded_mib": loaded, "working_mib": step_peak - loaded}


def write_logs(folder: Path, num_items: int, per_item: int, seed: int = 0) -> tuple[Path, Path]:
    """A raw CSV log of about `per_item * num_items` interactions and an item CSV; every item occurs."""
    sequences = synthetic_log(per_item * num_items, num_items, seed=seed)
    seen = np.zeros(num_items + 1, dtype=bool)
    for seq in sequences:
        seen[seq] = True
    rng = np.random.default_rng(seed + 1)
    missing = np.flatnonzero(~seen[1:]) + 1
    for item, user in zip(missing, rng.integers(0, len(sequences), size=missing.size)):
        sequences[user] = np.append(sequences[user], item)  # a tail item's single visit, at a user's end
    folder.mkdir(parents=True, exist_ok=True)
    inter, items = folder / "interactions.csv", folder / "items.csv"
    with atomic_path(inter) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write("user_id,item_id,timestamp\n")
        clock = 0
        for user, seq in enumerate(sequences):
            handle.writelines(f"u{user},i{item},{clock + step}\n" for step, item in enumerate(seq.tolist()))
            clock += len(seq)
    words = np.array(WORDS)
    title_words = rng.integers(0, len(words), size=(num_items, 6))
    with atomic_path(items) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write("item_id,title,category\n")
        handle.writelines(f"i{item},{' '.join(words[title_words[item - 1]])},{words[item % len(words)]}\n"
                          for item in range(1, num_items + 1))
    return inter, items


# ---------------------------------------------------------------------------------------------- one step, alone
def _timed(work):
    """work()'s result and its seconds: wall clock, and this process's CPU time (user + system, every thread),
    which other jobs on a shared machine hardly change."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, {"seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu}


def run_worker(step: str, folder: Path, max_memory: str | None = None) -> dict:
    """One step in this (fresh) process; what it measures is what the step itself costs. Without `max_memory` the
    step runs with the library's defaults (and so does a baseline version that has no such option)."""
    budget = {} if max_memory is None else {"max_memory": max_memory}
    if step == "prepare":
        from reaemb_trl.data import prepare_dataset

        _, timing = _timed(lambda: prepare_dataset("csv", interactions=folder / "interactions.csv",
                                                   items=folder / "items.csv", output=folder / "prepared",
                                                   overwrite=True, show_progress=False, **budget))
        counts = json.loads((folder / "prepared" / "dataset.json").read_text())["counts"]
        return {**timing, "peak_mib": _memory_mib("VmHWM"), "items": counts["items"],
                "users": counts["users"], "interactions": counts["interactions"]}
    if step == "candidates":
        import scipy.sparse as sp

        from reaemb_trl.data import sample_candidates

        if budget:
            from reaemb_trl.data.cooccurrence import parse_memory

            budget = {"max_memory": parse_memory(max_memory)}

        cooc = sp.load_npz(folder / "prepared" / "cooccurrence.npz").tocsr()
        loaded_peak, loaded = _memory_mib("VmHWM"), _memory_mib("VmRSS")
        _reset_peak()
        candidates, timing = _timed(lambda: sample_candidates(cooc, num_positives=1, num_candidates=10, **budget))
        assert candidates.item_ids.shape == (cooc.shape[0], 10)
        return {**timing, **_step_memory(loaded_peak, loaded), "cooccurrence_nonzeros": int(cooc.nnz)}
    if step == "export":
        import torch

        from reaemb_trl.data import PreparedDataset
        from reaemb_trl.embedder import LatentReasoningEmbedder
        from reaemb_trl.export import ExportOptions, export_item_table

        torch.manual_seed(0)
        dataset = PreparedDataset.load(folder / "prepared")
        embedder = LatentReasoningEmbedder.from_pretrained(folder.parent / "embedder")
        loaded_peak, loaded = _memory_mib("VmHWM"), _memory_mib("VmRSS")
        _reset_peak()
        _, timing = _timed(lambda: export_item_table(embedder, dataset, folder / "items.safetensors",
                                                     ExportOptions(batch_size=128, show_progress=False,
                                                                   overwrite=True)))
        return {**timing, **_step_memory(loaded_peak, loaded),
                "table_mib": (dataset.num_items + 1) * embedder.config.hidden_size * 4 / 2**20}
    raise ValueError(f"unknown step {step!r}")


def _measure(step: str, folder: Path, max_memory: str | None = None, baseline: str | None = None) -> dict:
    """One step in a fresh process: this version, or with `baseline` (a source tree) first on PYTHONPATH."""
    command = [sys.executable, __file__, "--worker", step, "--output", str(folder)]
    if max_memory is not None:
        command += ["--max-memory", max_memory]
    env = None
    if baseline is not None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (baseline, os.environ.get("PYTHONPATH"))))}
    run = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if run.returncode:
        raise RuntimeError(f"step {step} on {folder} failed:\n{run.stderr[-4000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def growth(sizes: list[int], values: list[float]) -> list[float | None]:
    """Exponent b of value ~ size^b between each pair of consecutive sizes."""
    return [round(math.log(b / a) / math.log(n / m), 2) if a > 0 and b > 0 else None
            for (m, a), (n, b) in zip(zip(sizes, values), zip(sizes[1:], values[1:]))]


def _markdown(result: dict) -> str:
    sizes = result["sizes"]
    lines = [f"| step | measure | {' | '.join(f'{n:,} items' for n in sizes)} | growth exponents |",
             f"|---|---|{'---|' * len(sizes)}---|"]
    for step in result["steps"]:
        for key, label in (("seconds", "seconds"), ("cpu_seconds", "CPU seconds"), ("peak_mib", "peak MiB"),
                           ("working_mib", "working MiB")):
            values = result["steps"][step].get(key)
            if values is not None:
                exponents = result["growth"][step].get(key, [])
                lines.append(f"| {step} | {label} | {' | '.join(f'{v:,.1f}' for v in values)} | "
                             f"{', '.join('-' if e is None else f'{e:.2f}' for e in exponents)} |")
    return "\n".join(lines) + "\n"


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    sizes = result["sizes"]
    for step, measured in result["steps"].items():
        left.loglog(sizes, measured["seconds"], marker="o", label=step)
        right.loglog(sizes, measured["peak_mib"], marker="o", label=f"{step} peak")
    for step, measured in result.get("baseline", {}).get("steps", {}).items():
        right.loglog(sizes, measured["peak_mib"], marker="x", linestyle=":", label=f"{step} peak, baseline")
    if "export" in result["steps"]:
        right.loglog(sizes, result["steps"]["export"]["working_mib"], marker="s", linestyle="--",
                     label="export working")
        right.loglog(sizes, result["steps"]["export"]["table_mib"], linestyle=":", color="grey",
                     label="one whole table")
    for axis, label in ((left, "seconds"), (right, "MiB")):
        axis.set_xlabel("items in the catalogue")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(f"bench_scale.py: about {result['interactions_per_item']} interactions per item")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="Print the result as one JSON object on the last line.")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000],
                        help="Catalogue sizes (items), smallest first.")
    parser.add_argument("--interactions-per-item", type=int, default=20)
    parser.add_argument("--output", default="outputs/scale", help="Working folder (logs, prepared data, tables).")
    parser.add_argument("--max-memory", help="Memory budget of prepare and candidates (e.g. 4GiB); default: the "
                        "library's.")
    parser.add_argument("--baseline", help="Source tree of another version (holding reaemb_trl/) to measure "
                        f"{' and '.join(BASELINE_STEPS)} with as well, per size.")
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS), help="Steps to measure.")
    parser.add_argument("--note", help="A line stored with the results (e.g. that the machine was shared, so that "
                        "wall seconds are inflated).")
    parser.add_argument("--worker", choices=STEPS, help=argparse.SUPPRESS)  # one step in a fresh process
    args = parser.parse_args()
    output = Path(args.output)
    if args.worker:
        print(json.dumps(run_worker(args.worker, output, args.max_memory)))
        return 0
    if sorted(args.sizes) != args.sizes or len(set(args.sizes)) != len(args.sizes) or args.sizes[0] < 100:
        parser.error("--sizes must be distinct, at least 100, smallest first")
    if args.steps != [step for step in STEPS if step in args.steps]:
        parser.error(f"--steps: each at most once, in the order {' '.join(STEPS)}")
    if args.baseline is not None and not (Path(args.baseline) / "reaemb_trl").is_dir():
        parser.error(f"--baseline {args.baseline}: no reaemb_trl/ folder there")

    from reaemb_trl.embedder import LatentReasoningEmbedder
    from reaemb_trl.testing import save_tiny_decoder

    backbone = save_tiny_decoder(output / "backbone", **TINY_DECODER)
    LatentReasoningEmbedder.from_backbone(backbone, LoadingOptions(max_length=64)).save_pretrained(output / "embedder")
    steps: dict = {step: {} for step in args.steps}
    baseline: dict = {step: {} for step in BASELINE_STEPS if step in args.steps and args.baseline}
    generate_seconds = []
    for size in args.sizes:
        folder = output / f"items_{size}"
        start = time.perf_counter()
        write_logs(folder, size, args.interactions_per_item)
        generate_seconds.append(round(time.perf_counter() - start, 2))
        for step in args.steps:
            # the baseline first: each step reads the prepared folder that this version then rewrites
            runs = [(baseline[step], args.baseline, "baseline")] if step in baseline else []
            for record, source, label in runs + [(steps[step], None, "this version")]:
                measured = _measure(step, folder, None if source else args.max_memory, source)
                print(f"[scale] {size:,} items, {step} ({label}): {measured['seconds']:.1f} s ("
                      f"{measured['cpu_seconds']:.1f} s CPU), peak "
                      f"{measured['peak_mib']:.0f} MiB", file=sys.stderr, flush=True)
                for key, value in measured.items():
                    record.setdefault(key, []).append(round(value, 2) if isinstance(value, float) else value)
    result = {
        "sizes": args.sizes,
        "interactions_per_item": args.interactions_per_item,
        "cpu_count": os.cpu_count(),
        "max_memory": args.max_memory,
        **({"note": args.note} if args.note else {}),
        "generate_seconds": generate_seconds,
        "steps": steps,
        "growth": {step: {key: growth(args.sizes, steps[step][key])
                          for key in ("seconds", "cpu_seconds", "peak_mib", "working_mib") if key in steps[step]}
                   for step in args.steps},
        # seconds against the work each step does: interactions read, co-occurrence entries scanned, items encoded
        "seconds_growth_per_work": {step: growth(steps[work_step][work], steps[step]["seconds"])
                                    for step, work_step, work in (("prepare", "prepare", "interactions"),
                                                                  ("candidates", "candidates",
                                                                   "cooccurrence_nonzeros"),
                                                                  ("export", "prepare", "items"))
                                    if step in steps and work_step in steps},
    }
    if baseline:
        result["baseline"] = {"source": str(Path(args.baseline).resolve()), "steps": baseline}
        result["ratio_to_baseline"] = {
            step: {key: [round(new / old, 3) for new, old in zip(steps[step][key], baseline[step][key])]
                   for key in ("seconds", "cpu_seconds", "peak_mib", "working_mib") if key in baseline[step]}
            for step in baseline}
    write_json(output / "scale.json", result)
    with atomic_path(output / "scale.md") as tmp:
        tmp.write_text(_markdown(result), encoding="utf-8")
    _plot(result, output / "scale.png")
    print(json.dumps(result) if args.json else _markdown(result))
    return 0


if __name__ == "__main__":
    with sigterm_as_interrupt():  # a scheduler's SIGTERM unwinds like Ctrl-C: temporary folders go
        sys.exit(main())
