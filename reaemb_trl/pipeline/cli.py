"""`reaemb-trl pipeline --config RECIPE.yaml [--output DIR]`."""

from __future__ import annotations

import argparse

from .pipeline_config import PipelineConfig
from .runner import PipelineRunner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="reaemb-trl pipeline",
        description="Run prepare -> LRCL -> CRRL -> export -> compare on one recipe and write report.md. "
        "A re-run skips finished stages whose config is unchanged and resumes a killed stage from its checkpoint.",
    )
    parser.add_argument("--config", required=True, help="pipeline recipe, e.g. recipes/quickstart_cpu.yaml")
    parser.add_argument("--output", default=None, help="output folder (overrides the recipe's output_dir)")
    args = parser.parse_args(argv)
    config = PipelineConfig.from_yaml(args.config, output_dir=args.output)
    report = PipelineRunner(config).run()
    print(f"Report written to {report}")
    return 0
