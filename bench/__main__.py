"""``python -m bench``: see ``bench/run.py``.

    python -m bench --db sqlite,postgresql -r 5 --markdown bench/RESULTS.md
"""

import sys

from .run import main

sys.exit(main())
