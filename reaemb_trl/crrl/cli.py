"""`reaemb-trl crrl --config RECIPE.yaml [--key value ...]`: CRRL from an LRCL folder to an embedder folder;
`reaemb-trl cooc-sft` (same recipe keys): its supervised control on the same positives and negatives."""

from __future__ import annotations

import argparse
import dataclasses
import json

from trl import GRPOConfig

from ..recipe import parse_recipe, renamed_message
from .crrl_config import UNUSED_GRPO_KEYS, CRRLConfig
from .run import run

COOC_SFT_DESCRIPTION = ("CRRL's supervised control: the recipe's CRRL positives and negatives as a cross-entropy loss "
                        "on the thought module, for as many item visits as CRRL.")


def help_text(prog: str, description: str | None = None) -> str:
    """The `--help` of the CRRL sub-commands: ReaEmb's own keys first, then TRL's (GRPOConfig / TrainingArguments,
    with CRRL's defaults); the GRPOConfig keys CRRL refuses and the renamed keys are not offered, only named at the
    end."""
    trl_keys = {f.name for f in dataclasses.fields(GRPOConfig)}
    refused = [name for names in UNUSED_GRPO_KEYS.values() for name in names if name in trl_keys]
    parser = argparse.ArgumentParser(
        prog=prog, usage="%(prog)s [--config RECIPE.yaml] [--key value ...]", description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="--config RECIPE.yaml: a YAML file whose keys set these options; flags given after it override them. "
               f"Refused (CRRL samples latent thoughts, not text): {', '.join(refused)}. Renamed: "
               f"{renamed_message(CRRLConfig.RENAMED_KEYS, CRRLConfig.RENAMED_KEYS)}.")
    groups = {False: parser.add_argument_group("ReaEmb options (CRRL's own)"),
              True: parser.add_argument_group("TRL options (GRPOConfig / TrainingArguments keys, CRRL's defaults)")}
    for field in sorted(dataclasses.fields(CRRLConfig), key=lambda f: f.name in trl_keys):  # stable: own keys first
        if not field.init or field.name in refused or field.name in CRRLConfig.RENAMED_KEYS:
            continue
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        groups[field.name in trl_keys].add_argument(f"--{field.name}", default=default,
                                                    help=field.metadata.get("help", ""))
    return parser.format_help()


def _asks_for_help(argv: list[str]) -> bool:
    return "-h" in argv or "--help" in argv


def main(argv: list[str]) -> int:
    if _asks_for_help(argv):
        print(help_text("reaemb-trl crrl"))
        return 0
    args = parse_recipe(CRRLConfig, argv, prog="reaemb-trl crrl")
    metrics = run(args)
    print(json.dumps(metrics, indent=2))
    return 0


def cooc_sft_main(argv: list[str]) -> int:
    from .cooc_sft import run_cooc_sft

    if _asks_for_help(argv):
        print(help_text("reaemb-trl cooc-sft", COOC_SFT_DESCRIPTION))
        return 0
    args = parse_recipe(CRRLConfig, argv, prog="reaemb-trl cooc-sft", description=COOC_SFT_DESCRIPTION)
    metrics = run_cooc_sft(args)
    print(json.dumps({key: value for key, value in metrics.items() if key != "log_history"}, indent=2))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
