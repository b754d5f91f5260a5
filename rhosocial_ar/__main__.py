"""``python -m rhosocial_ar``: the ``rhosocial-ar`` command without its console script.

    $ python -m rhosocial_ar demo
    $ python -m rhosocial_ar --version
"""

import sys

from .cli import main

sys.exit(main())
