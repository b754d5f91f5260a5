"""What differs between the Python versions the library supports (3.10 to 3.13).

    try:
        ...
    except sa.exc.DBAPIError as exc:
        add_note(exc, "rhosocial_ar connection 'default' at sqlite:///app.db")
        raise
"""

from __future__ import annotations

__all__ = ["add_note"]


def add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note(note)``, also on Python 3.10, which has no ``add_note``.

    There the note goes into ``__notes__`` by hand, where 3.11's tracebacks and
    the ``exceptiongroup`` backport look for it.
    """
    if hasattr(exc, "add_note"):
        exc.add_note(note)
    else:
        exc.__notes__ = [*getattr(exc, "__notes__", ()), note]
