"""`reaemb-trl pipeline --config RECIPE.yaml [--output DIR] [--dry-run] [--SECTION.KEY VALUE ...]`."""

from __future__ import annotations

import argparse

import yaml

from ..errors import InputError
from .pipeline_config import PipelineConfig
from .runner import PipelineRunner


def parse_overrides(extra: list[str]) -> dict:
    """`--lrcl.max_steps 10 --seed=3` -> {"lrcl.max_steps": 10, "seed": 3}; values read as YAML (numbers, lists,
    booleans), so they mean what they would in the recipe file. Which names exist is checked with the recipe."""
    overrides = {}
    position = 0
    while position < len(extra):
        token = extra[position]
        flag, equals, value = token.partition("=")  # `--KEY=VALUE`, or `--KEY VALUE`
        paired = bool(equals) or (position + 1 < len(extra) and not extra[position + 1].startswith("--"))
        if not flag.startswith("--") or flag == "--" or not paired:
            raise InputError(f"{token}: overrides are `--KEY VALUE` or `--SECTION.KEY VALUE` pairs "
                             "(e.g. --lrcl.max_steps 10)")
        if not equals:
            value = extra[position + 1]
        position += 1 if equals else 2
        key = flag[2:].replace("-", "_")
        if key in overrides:
            raise InputError(f"{flag} is given twice; give each override once")
        try:
            overrides[key] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise InputError(f"{flag} {value!r}: not a value a recipe could hold "
                             f"({getattr(err, 'problem', None) or err})") from None
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
        PipelineRunner(config, log=print, dry_run=True).run()  # the plan is this command's output
        return 0
    report = PipelineRunner(config).run()
    print(f"Report written to {report}")
    return 0
