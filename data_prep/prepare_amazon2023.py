"""Amazon Reviews 2023 (McAuley lab): a category's reviews JSONL + meta JSONL, gzipped or not.

Usage (the source's usual filters are DEFAULTS in prepare.py; options override them):
    python data_prep/prepare_amazon2023.py --interactions Video_Games.jsonl.gz \
        --items meta_Video_Games.jsonl.gz --output data/games
"""

import sys

from prepare import launch

if __name__ == "__main__":
    sys.exit(launch("amazon2023"))
