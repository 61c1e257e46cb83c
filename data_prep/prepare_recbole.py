"""RecBole atomic files: NAME.inter + NAME.item with typed headers (user_id:token, item_id:token, ...).

Usage (the source's usual filters are DEFAULTS in prepare.py; options override them):
    python data_prep/prepare_recbole.py --interactions ml-100k.inter --items ml-100k.item --output data/ml-100k
"""

import sys

from prepare import launch

if __name__ == "__main__":
    sys.exit(launch("recbole"))
