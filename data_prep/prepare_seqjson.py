"""A {user: [item ids]} JSON (each list in time order) + an {item id: {attribute: value}} JSON.
The bundled Amazon Office 2014 sample is in this format (`reaemb_trl.data.sample_dataset_files()`).

Usage (options after the defaults below override them; see `reaemb-trl prepare --help`):
    python data_prep/prepare_seqjson.py --interactions Office.inter.json --items Office.item.json --output data/office
"""

import sys

from reaemb_trl.cli import main

DEFAULTS = []

if __name__ == "__main__":
    sys.exit(main(["prepare", "seqjson", *DEFAULTS, *sys.argv[1:]]))
