"""MovieLens (GroupLens): u.data + u.item (100K) or ratings.dat + movies.dat (1M); every rating is an interaction.

Usage (the source's usual filters are DEFAULTS in prepare.py; options override them):
    python data_prep/prepare_movielens.py --interactions ml-100k/u.data --items ml-100k/u.item --output data/ml-100k
"""

import sys

from prepare import launch

if __name__ == "__main__":
    sys.exit(launch("movielens"))
