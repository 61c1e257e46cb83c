"""`reaemb-trl` command line: one sub-command per stage, each implemented next to its stage."""

from __future__ import annotations

import importlib
import logging
import sys

from .errors import InputError
from .io_utils import refused_write, sigterm_as_interrupt

# Exit code of bad input (InputError) and of a write the machine refused: argparse's code for a usage error.
USAGE_ERROR = 2

# name -> (module:function, one-line help). Imported lazily so `--help` stays fast.
COMMANDS = {
    "prepare": ("reaemb_trl.data.cli:main", "Turn a raw recommendation dataset into a prepared folder."),
    "lrcl": ("reaemb_trl.lrcl.cli:main", "Stage 1: latent reasoning-enhanced contrastive learning."),
    "crrl": ("reaemb_trl.crrl.cli:main", "Stage 2: collaborative reward RL (GRPO on latent thoughts)."),
    "cooc-sft": ("reaemb_trl.crrl.cli:cooc_sft_main", "CRRL's supervised control on the same positives and negatives."),
    "export": ("reaemb_trl.export.cli:main", "Embed every item of a prepared dataset into an item table "
               "(safetensors, npy, parquet or RecBole)."),
    "encode": ("reaemb_trl.export.cli:encode_main", "Embed new items (a raw item file) or plain texts with a trained "
               "embedder folder; rows equal export's for the same items."),
    "convert": ("reaemb_trl.export.cli:convert_main", "Write an item table in another format without encoding again."),
    "evaluate": ("reaemb_trl.downstream.cli:evaluate_main", "Train and test one sequential recommender."),
    "compare": ("reaemb_trl.downstream.cli:compare_main", "Compare embedding tables across recommenders and seeds."),
    "pipeline": ("reaemb_trl.pipeline.cli:main", "prepare -> LRCL -> CRRL -> export -> compare, resumable."),
}


class _CurrentStderr(logging.StreamHandler):
    """Writes each record to `sys.stderr` as it is at that moment (pytest and `redirect_stderr` replace it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # StreamHandler.__init__ sets it; the current sys.stderr is used instead
        pass


def _log_progress_to_stderr() -> None:
    """The package's INFO records (stage progress) and warnings on stderr, the command's output on stdout."""
    package = logging.getLogger("reaemb_trl")
    if not any(isinstance(handler, _CurrentStderr) for handler in package.handlers):
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        package.addHandler(handler)
    package.setLevel(logging.INFO)


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: reaemb-trl COMMAND [options]   (reaemb-trl COMMAND --help for details; --version)", "",
             "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from . import __version__

        print(f"reaemb-trl {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"reaemb-trl: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return USAGE_ERROR
    module_name, func_name = COMMANDS[name][0].split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    _log_progress_to_stderr()
    try:
        with sigterm_as_interrupt():  # SIGTERM unwinds like Ctrl-C: no scratch is left
            return int(func(rest) or 0)
    except InputError as err:
        print(f"reaemb-trl {name}: error: {err}", file=sys.stderr)
        return USAGE_ERROR
    except Exception as err:  # a write the machine refused outside the atomic helpers (which name their file)
        reason = refused_write(err)
        if reason is None:
            raise
        where = f"{err.filename}: " if getattr(err, "filename", None) else ""
        print(f"reaemb-trl {name}: error: {where}cannot write: {reason}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt as err:
        print(f"reaemb-trl {name}: stopped by {err.args[0] if err.args else 'SIGINT'}; nothing half-written "
              "was left (a training stage resumes from its last checkpoint)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
