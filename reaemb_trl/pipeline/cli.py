"""`reaemb-trl pipeline --config RECIPE.yaml [--output DIR] [--dry-run] [--SECTION.KEY VALUE ...]`."""

from __future__ import annotations

import argparse

import yaml

from ..errors import InputError
from .pipeline_config import PipelineConfig
from .runner import PipelineRunner


def parse_overrides(extra: list[str]) -> dict:
    """`--lrcl.max_steps 10 --seed 3` -> {"lrcl.max_steps": 10, "seed": 3}; values read as YAML (numbers, lists,
    booleans), so they mean what they would in the recipe file."""
    overrides = {}
    for position in range(0, len(extra), 2):
        flag = extra[position]
        if not flag.startswith("--") or position + 1 == len(extra) or extra[position + 1].startswith("--"):
            raise InputError(f"{flag}: overrides are `--KEY VALUE` or `--SECTION.KEY VALUE` pairs "
                             "(e.g. --lrcl.max_steps 10)")
        overrides[flag[2:].replace("-", "_")] = yaml.safe_load(extra[position + 1])
    return overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="reaemb-trl pipeline",
        description="Run prepare -> LRCL -> CRRL -> export -> compare on one recipe and write report.md. "
        "A re-run skips finished stages whose config is unchanged and resumes a killed stage from its checkpoint. "
        "Any recipe key can be overridden: --seed 3, --lrcl.max_steps 10, --crrl.sigma 0.05, --compare.seeds 2.",
    )
    parser.add_argument("--config", required=True, help="pipeline recipe, e.g. recipes/quickstart_cpu.yaml")
    parser.add_argument("--output", default=None, help="output folder (overrides the recipe's output_dir)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the resolved recipe and what each stage would do (run, resume, skip), then exit")
    args, extra = parser.parse_known_args(argv)
    config = PipelineConfig.from_yaml(args.config, output_dir=args.output, overrides=parse_overrides(extra))
    if args.dry_run:
        print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
        PipelineRunner(config, dry_run=True).run()
        return 0
    report = PipelineRunner(config).run()
    print(f"Report written to {report}")
    return 0
