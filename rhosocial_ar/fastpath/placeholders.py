"""A compiled statement's SQL with positional placeholders, and its IN lists rendered per length.

    form = Placeholders.of(compiled)          # None: leave the statement to SQLAlchemy
    sql = form.sql_for({'ids': 3})            # ... WHERE id IN (%s, %s, %s) AND name = %s

SQLAlchemy renders an expanding parameter (``IN (__[POSTCOMPILE_ids])``) anew
on every execution and names each element (``ids_1``, ``ids_2``, ...), about
0.6 µs per value. Here the statement is cut once where its lists go, the SQL
for each combination of list lengths is kept, and the values are sent as one
positional tuple. For pyformat drivers (psycopg2, PyMySQL) ``%(name)s``
becomes ``%s``, which both drivers also accept, and fill from a tuple faster
than from a dict.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["Placeholders"]

_PYFORMAT = re.compile(r"%\(([^)]*)\)s")
_POSTCOMPILE = re.compile(r"__\[POSTCOMPILE_([^\]]+)\]")
_EITHER = re.compile(f"{_PYFORMAT.pattern}|{_POSTCOMPILE.pattern}")
_MARKERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}
_CACHE_LIMIT = 16      # SQL strings per statement: the list lengths seen lately


class Placeholders:
    """One statement's SQL cut at its IN lists; its parameters in placeholder order."""

    __slots__ = ("order", "expanding", "_chunks", "_marker", "_sql")

    def __init__(self, chunks: list[str], order: tuple[str, ...], expanding: frozenset[str],
                 marker: str) -> None:
        self._chunks = chunks           # the text around the lists: one more than the lists
        self.order = order              # every parameter's name, once per placeholder
        self.expanding = expanding      # the names in ``order`` that are lists
        self._marker = marker
        self._sql: dict[tuple[int, ...], str] = {}

    @classmethod
    def of(cls, compiled: Any) -> Placeholders | None:
        """The positional form of ``compiled``, or None where SQLAlchemy must render it.

        None for numeric paramstyles, escaped parameter names, lists whose
        elements are rendered with casts, literally or as tuples, and SQL
        whose placeholders cannot be told apart from its text.
        """
        dialect = compiled.dialect
        marker = _MARKERS.get(dialect.paramstyle)
        if marker is None or compiled.literal_execute_params:
            return None
        binds = compiled.post_compile_params
        if compiled.escaped_bind_names or any(_rendered_apart(bind, dialect) for bind in binds):
            return None
        expanding = frozenset(compiled.bind_names[bind] for bind in binds)
        sql = compiled.string
        if compiled.positional:
            order = tuple(compiled.positiontup)
        else:
            if "%%(" in sql:             # a literal "%(" next to a placeholder: ambiguous
                return None
            order = tuple(_placeholder_names(sql))
            sql = _PYFORMAT.sub("%s", sql)
        parts = _POSTCOMPILE.split(sql)
        if parts[1::2] != [name for name in order if name in expanding] \
                or not set(order) <= set(compiled.bind_names.values()):
            return None
        return cls(parts[0::2], order, expanding, marker)

    def sql_for(self, lengths: Mapping[str, int]) -> str | None:
        """The SQL with each list as long as ``lengths`` says; None for an empty list.

        SQLAlchemy renders an empty IN as a dialect-specific always-false
        expression; those rare statements are left to it.
        """
        key = tuple(lengths[name] for name in self.order if name in self.expanding)
        found = self._sql.get(key)
        if found is None:
            if 0 in key:
                return None
            if len(self._sql) >= _CACHE_LIMIT:
                self._sql.clear()
            chunks = self._chunks
            pieces = [chunks[0]]
            for count, chunk in zip(key, chunks[1:], strict=True):
                pieces.append(", ".join([self._marker] * count))
                pieces.append(chunk)
            found = self._sql[key] = "".join(pieces)
        return found

    @property
    def sql(self) -> str:
        """The SQL of a statement without lists."""
        return self._chunks[0]


def _rendered_apart(bind: Any, dialect: Any) -> bool:
    """Lists whose elements SQLAlchemy renders other than as bare placeholders."""
    impl = bind.type._unwrapped_dialect_impl(dialect)
    return bool(impl._is_tuple_type or bind.literal_execute
                or (dialect._bind_typing_render_casts and impl.render_bind_cast))


def _placeholder_names(sql: str) -> list[str]:
    """The parameter names of pyformat ``sql``, in order, lists (``__[POSTCOMPILE_x]``) included."""
    return [pyformat or listed for pyformat, listed in _EITHER.findall(sql)]
