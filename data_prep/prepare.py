"""One launcher for every raw source: `python data_prep/prepare.py FORMAT [options]` runs `reaemb-trl prepare
FORMAT` with the filters usual for that source (DEFAULTS below); options given after them override them, since the
last value of a flag wins. Each `prepare_FORMAT.py` beside this file is the same launcher with FORMAT fixed, so the
per-source commands in data_prep/README.md keep working. See `reaemb-trl prepare --help` for every option.
"""

import sys

from reaemb_trl.cli import main

# The filters each source is usually prepared with; a format not named here gets none.
DEFAULTS = {
    # The classic 5-core.
    "amazon2018": ["--min-user-interactions", "5", "--min-item-interactions", "5"],
    # The ReaEmb reference preprocessing of Video Games: 5-core users, items with 3+ interactions.
    "amazon2023": ["--min-user-interactions", "5", "--min-item-interactions", "3"],
    # The ReaEmb reference: reviews with 4+ stars, 5-core users, businesses with 3+ reviews.
    "yelp": ["--min-rating", "4", "--min-user-interactions", "5", "--min-item-interactions", "3"],
}


def launch(source_format: str, argv: list[str] | None = None) -> int:
    """`reaemb-trl prepare source_format`, its usual filters, then argv (default: this process's arguments)."""
    argv = sys.argv[1:] if argv is None else argv
    return main(["prepare", source_format, *DEFAULTS.get(source_format, []), *argv])


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):  # no FORMAT: let the sub-command print its usage
        sys.exit(main(["prepare", *sys.argv[1:]]))
    sys.exit(launch(sys.argv[1], sys.argv[2:]))
