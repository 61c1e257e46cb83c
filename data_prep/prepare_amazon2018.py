"""Amazon review data 2014 or 2018 (McAuley lab): reviews + meta, JSON or python-literal lines, gzipped or not.

Usage (the source's usual filters are DEFAULTS in prepare.py; options override them):
    python data_prep/prepare_amazon2018.py --interactions reviews_Office_Products.json.gz \
        --items meta_Office_Products.json.gz --output data/office
"""

import sys

from prepare import launch

if __name__ == "__main__":
    sys.exit(launch("amazon2018"))
