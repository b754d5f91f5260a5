"""``python -m rhosocial_ar``: the ``rhosocial-ar`` command without its console script.

    $ python -m rhosocial_ar demo
    $ python -m rhosocial_ar --version
"""

import sys

from .cli import main

if __name__ == "__main__":    # imported as a module (tests import every module), it does nothing
    sys.exit(main())
