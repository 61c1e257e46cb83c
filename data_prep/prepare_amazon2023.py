"""Amazon Reviews 2023 (McAuley lab): a category's reviews JSONL + meta JSONL, gzipped or not.

Defaults follow the ReaEmb reference preprocessing of Video Games: 5-core users, items with 3+ interactions.

Usage (options after the defaults below override them; see `reaemb-trl prepare --help`):
    python data_prep/prepare_amazon2023.py --interactions Video_Games.jsonl.gz \
        --items meta_Video_Games.jsonl.gz --output data/games
"""

import sys

from reaemb_trl.cli import main

DEFAULTS = ["--min-user-interactions", "5", "--min-item-interactions", "3"]

if __name__ == "__main__":
    sys.exit(main(["prepare", "amazon2023", *DEFAULTS, *sys.argv[1:]]))
