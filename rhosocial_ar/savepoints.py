"""Savepoints by name inside an open transaction block.

    with User.transaction() as tx:
        User.create(username='ann')
        tx.savepoint('before_import')
        try:
            import_users()
        except ImportFailed:
            tx.rollback_to('before_import')   # ann stays; the import is undone
        tx.release('before_import')

Beside the savepoints nested blocks make: a name belongs to the block it was
set in and is used while that block is the innermost open one. The SQL is the
dialect's own (``Dialect.do_savepoint`` and friends, as SQLAlchemy's nested
transactions use), so the name is quoted as the database wants it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .errors import SavepointError

__all__ = ["Savepoints"]

# a plain identifier that fits every backend (PostgreSQL keeps 63 bytes of a name)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")
# SQLAlchemy names the savepoints of nested blocks so; one of ours would shadow them
_RESERVED = "sa_savepoint"


class Savepoints:
    """The named savepoints of one open block (a ``transaction.Frame``), oldest first."""

    __slots__ = ("frame", "names")

    def __init__(self, frame: Any) -> None:
        self.frame = frame
        # (name, how many records the block had enlisted when it was set)
        self.names: list[tuple[str, int]] = []

    def create(self, name: str) -> str:
        if not isinstance(name, str) or not _NAME.match(name):
            raise SavepointError(
                f"savepoint name {name!r}: use letters, digits and '_', not starting with a "
                f"digit, at most 63 characters"
            )
        if name.lower().startswith(_RESERVED):
            raise SavepointError(f"savepoint name {name!r}: names starting with "
                                 f"{_RESERVED!r} are SQLAlchemy's")
        if any(known == name for known, _ in self.names):
            # databases disagree (MySQL moves the name, PostgreSQL shadows it): refuse instead
            raise SavepointError(f"savepoint {name!r} is already set in this block; "
                                 f"release it or roll back to it first")
        sa_conn = self.frame.sa_conn
        sa_conn.dialect.do_savepoint(sa_conn, name)
        self.names.append((name, len(self.frame.records)))
        return name

    def rollback_to(self, name: str, rolled_back: Callable[[list[Any]], None]) -> None:
        """Undo the work since ``name``; the savepoint stays, later ones go."""
        index = self._index(name, "rollback_to")
        sa_conn = self.frame.sa_conn
        sa_conn.dialect.do_rollback_to_savepoint(sa_conn, name)
        kept = self.names[index][1]
        undone = self.frame.records[kept:]
        del self.frame.records[kept:]
        del self.names[index + 1:]
        rolled_back(undone)   # the records written since get their old state back

    def release(self, name: str) -> None:
        """Forget ``name`` and every savepoint set after it; their work stays."""
        index = self._index(name, "release")
        sa_conn = self.frame.sa_conn
        sa_conn.dialect.do_release_savepoint(sa_conn, name)
        del self.names[index:]

    def _index(self, name: str, action: str) -> int:
        for index, (known, _) in enumerate(self.names):
            if known == name:
                return index
        have = ", ".join(repr(n) for n, _ in self.names) or "none"
        raise SavepointError(f"{action}({name!r}): no savepoint of that name is set in this "
                             f"block (set here: {have})")
