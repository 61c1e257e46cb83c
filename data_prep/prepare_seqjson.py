"""A {user: [item ids]} JSON (each list in time order) + an {item id: {attribute: value}} JSON.
The bundled Amazon Office 2014 sample is in this format (`reaemb_trl.data.sample_dataset_files()`).

Usage (the source's usual filters are DEFAULTS in prepare.py; options override them):
    python data_prep/prepare_seqjson.py --interactions Office.inter.json --items Office.item.json --output data/office
"""

import sys

from prepare import launch

if __name__ == "__main__":
    sys.exit(launch("seqjson"))
