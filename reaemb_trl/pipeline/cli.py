"""`reaemb-trl pipeline --config RECIPE.yaml [--output DIR] [--dry-run] [--KEY VALUE ...] [--SECTION.KEY VALUE ...]`."""

from __future__ import annotations

import typing
from dataclasses import asdict, dataclass, field, fields, make_dataclass

import yaml

from ..errors import InputError
from ..recipe import help_field, read_config_flag, trl_parse
from .pipeline_config import PipelineConfig
from .runner import PipelineRunner


@dataclass
class PipelineArguments:
    output: str | None = help_field("Output folder (overrides the recipe's output_dir).", default=None)
    dry_run: bool = help_field("Print the resolved recipe and what each stage would do (run, resume, skip), then "
                               "exit; writes nothing.", default=False)


def _recipe_keys() -> type:
    """A dataclass of the recipe's top-level keys that are not sections (PipelineConfig's output_dir, seed, ...), with
    their types, defaults and help: TrlParser makes each one a flag and sets its default from the recipe file."""
    hints = typing.get_type_hints(PipelineConfig)
    # new Field objects: HfArgumentParser rewrites the `type` of the fields it is given
    keys = [(key.name, hints[key.name], field(default=key.default, default_factory=key.default_factory,
                                               metadata=key.metadata))
            for key in fields(PipelineConfig) if key.name not in PipelineConfig.sections()]
    return make_dataclass("RecipeKeys", keys, namespace={"_argument_group_name": "recipe keys (override the recipe's)"})


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
        try:
            overrides[flag[2:].replace("-", "_")] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise InputError(f"{flag} {value!r}: not a value a recipe could hold "
                             f"({getattr(err, 'problem', None) or err})") from None
    return overrides


def _refuse_repeated(argv: list[str]) -> None:
    """A flag or override given twice is refused (argparse would keep the last one silently), like a key given twice
    in the recipe file."""
    seen = set()
    for token in argv:
        flag = token.partition("=")[0]
        if flag.startswith("--") and len(flag) > 2:
            key = flag[2:].replace("-", "_")
            if key in seen:
                raise InputError(f"{flag} is given twice; give each flag once")
            seen.add(key)


def main(argv: list[str] | None = None) -> int:
    argv = list(argv or [])
    _refuse_repeated(argv)
    path, _ = read_config_flag(argv)  # its clear errors come before TrlParser reads the file
    args, keys, _, extra = trl_parse(
        (PipelineArguments, _recipe_keys()), argv, prog="reaemb-trl pipeline",
        description="Run prepare -> LRCL -> CRRL -> export -> compare on one recipe and write report.md. A re-run "
        "skips finished stages whose config is unchanged and resumes a killed stage from its checkpoint.",
        epilog="--config RECIPE.yaml (required): the pipeline recipe, e.g. recipes/quickstart_cpu.yaml; its `env:` "
        "mapping sets environment variables. The recipe keys above are flags; a key of a section "
        f"({', '.join(PipelineConfig.sections())}) is overridden with --SECTION.KEY VALUE, the value read as "
        "YAML: --lrcl.max_steps 10, --crrl.sigma 0.05, --compare.recommenders '[sasrec, gru4rec]', "
        "--dataset.options.cooc_window 3.",
        return_remaining_strings=True, separate_remaining_strings=True)
    # `_`: the file's sections (and any unknown key), which TrlParser hands back as `--KEY str(value)`; from_yaml
    # reads and checks them from the file itself.
    if path is None:  # checked after parsing, so that --help needs no recipe
        raise InputError("--config RECIPE.yaml is required (e.g. --config recipes/quickstart_cpu.yaml)")
    config = PipelineConfig.from_yaml(path, output_dir=args.output,
                                      overrides={**asdict(keys), **parse_overrides(extra)})
    if args.dry_run:
        print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
        PipelineRunner(config, log=print, dry_run=True).run()  # the plan is this command's output
        return 0
    report = PipelineRunner(config).run()
    print(f"Report written to {report}")
    return 0
