"""Yelp Open Dataset: yelp_academic_dataset_review.json + yelp_academic_dataset_business.json.

Defaults follow the ReaEmb reference: reviews with 4+ stars, 5-core users, businesses with 3+ reviews.

Usage (options after the defaults below override them; see `reaemb-trl prepare --help`):
    python data_prep/prepare_yelp.py --interactions yelp_academic_dataset_review.json \
        --items yelp_academic_dataset_business.json --output data/yelp
"""

import sys

from reaemb_trl.cli import main

DEFAULTS = ["--min-rating", "4", "--min-user-interactions", "5", "--min-item-interactions", "3"]

if __name__ == "__main__":
    sys.exit(main(["prepare", "yelp", *DEFAULTS, *sys.argv[1:]]))
