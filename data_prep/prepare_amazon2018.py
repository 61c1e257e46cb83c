"""Amazon review data 2014 or 2018 (McAuley lab): reviews + meta, JSON or python-literal lines, gzipped or not.

Defaults: the classic 5-core.

Usage (options after the defaults below override them; see `reaemb-trl prepare --help`):
    python data_prep/prepare_amazon2018.py --interactions reviews_Office_Products.json.gz \
        --items meta_Office_Products.json.gz --output data/office
"""

import sys

from reaemb_trl.cli import main

DEFAULTS = ["--min-user-interactions", "5", "--min-item-interactions", "5"]

if __name__ == "__main__":
    sys.exit(main(["prepare", "amazon2018", *DEFAULTS, *sys.argv[1:]]))
