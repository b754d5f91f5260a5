"""What differs between the Python versions the library supports (3.10 to 3.13).

    try:
        ...
    except sa.exc.DBAPIError as exc:
        add_note(exc, "rhosocial_ar connection 'default' at sqlite:///app.db")
        raise
"""

from __future__ import annotations

import sys

__all__ = ["add_note"]


def add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note(note)``, also on Python 3.10, which has no ``add_note``.

    There the note goes into ``__notes__`` by hand, where 3.11's tracebacks and
    the ``exceptiongroup`` backport look for it.
    """
    if sys.version_info >= (3, 11):
        exc.add_note(note)
    else:   # through __dict__: 3.10's BaseException declares no __notes__
        exc.__dict__.setdefault("__notes__", []).append(note)
