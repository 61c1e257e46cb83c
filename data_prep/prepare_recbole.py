"""RecBole atomic files: NAME.inter + NAME.item with typed headers (user_id:token, item_id:token, ...).

Usage (options after the defaults below override them; see `reaemb-trl prepare --help`):
    python data_prep/prepare_recbole.py --interactions ml-100k.inter --items ml-100k.item --output data/ml-100k
"""

import sys

from reaemb_trl.cli import main

DEFAULTS = []

if __name__ == "__main__":
    sys.exit(main(["prepare", "recbole", *DEFAULTS, *sys.argv[1:]]))
