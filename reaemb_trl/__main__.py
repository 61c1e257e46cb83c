"""`python -m reaemb_trl ...` is `reaemb-trl ...`."""

import sys

from .cli import main

sys.exit(main())
