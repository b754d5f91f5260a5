#!/usr/bin/env python3
"""Move or copy the rows of one model from one named connection to another.

    python scripts/transfer_rows.py --app myapp.settings User --from legacy --to modern --move

Kept for command lines written before the command existed: it runs
``rhosocial-ar transfer ARGS`` (``rhosocial_ar/cli_transfer.py``), which the
installed package provides wherever it is installed.
"""

from __future__ import annotations

import sys

from rhosocial_ar.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["transfer", *sys.argv[1:]]))
