"""Yelp Open Dataset: yelp_academic_dataset_review.json + yelp_academic_dataset_business.json.

Usage (the source's usual filters are DEFAULTS in prepare.py; options override them):
    python data_prep/prepare_yelp.py --interactions yelp_academic_dataset_review.json \
        --items yelp_academic_dataset_business.json --output data/yelp
"""

import sys

from prepare import launch

if __name__ == "__main__":
    sys.exit(launch("yelp"))
