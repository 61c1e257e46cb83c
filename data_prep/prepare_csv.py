"""A CSV of interactions (header: user,item[,timestamp][,rating]) + an item CSV (header: item,title,...).

Usage (the source's usual filters are DEFAULTS in prepare.py; options override them):
    python data_prep/prepare_csv.py --interactions interactions.csv --items items.csv --output data/mine
"""

import sys

from prepare import launch

if __name__ == "__main__":
    sys.exit(launch("csv"))
