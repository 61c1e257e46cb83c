"""A CSV of interactions (header: user,item[,timestamp][,rating]) + an item CSV (header: item,title,...).

Usage (options after the defaults below override them; see `reaemb-trl prepare --help`):
    python data_prep/prepare_csv.py --interactions interactions.csv --items items.csv --output data/mine
"""

import sys

from reaemb_trl.cli import main

DEFAULTS = []

if __name__ == "__main__":
    sys.exit(main(["prepare", "csv", *DEFAULTS, *sys.argv[1:]]))
