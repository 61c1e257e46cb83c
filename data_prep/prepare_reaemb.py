"""The ReaEmb reference's processed files: handled/inter.txt + handled/item_info.jsonline.

Usage (options after the defaults below override them; see `reaemb-trl prepare --help`):
    python data_prep/prepare_reaemb.py --interactions handled/inter.txt --items handled/item_info.jsonline \
        --output data/games
"""

import sys

from reaemb_trl.cli import main

DEFAULTS = []

if __name__ == "__main__":
    sys.exit(main(["prepare", "reaemb", *DEFAULTS, *sys.argv[1:]]))
