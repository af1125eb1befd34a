"""`python -m multimodal_dln ...`: the `mdln` command line (see `multimodal_dln.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
