"""The ReaEmb reference's processed files: handled/inter.txt + handled/item_info.jsonline.

Usage (the source's usual filters are DEFAULTS in prepare.py; options override them):
    python data_prep/prepare_reaemb.py --interactions handled/inter.txt --items handled/item_info.jsonline \
        --output data/games
"""

import sys

from prepare import launch

if __name__ == "__main__":
    sys.exit(launch("reaemb"))
