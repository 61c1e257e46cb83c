"""MovieLens (GroupLens): u.data + u.item (100K) or ratings.dat + movies.dat (1M); every rating is an interaction.

Usage (options after the defaults below override them; see `reaemb-trl prepare --help`):
    python data_prep/prepare_movielens.py --interactions ml-100k/u.data --items ml-100k/u.item --output data/ml-100k
"""

import sys

from reaemb_trl.cli import main

DEFAULTS = []

if __name__ == "__main__":
    sys.exit(main(["prepare", "movielens", *DEFAULTS, *sys.argv[1:]]))
