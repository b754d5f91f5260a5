"""Running statements: through SQLAlchemy, or straight on its DB-API connection.

    rows = fetch_all(sa_conn, User.__ar_meta__.find_stmt, {'_ar_pk_0': 1})
    count, key = write(sa_conn, User.__ar_meta__.insert_stmt, {'name': 'ann'})

SQLAlchemy's ``Connection.execute`` costs tens of microseconds per call
(cache key, execution context, result object) on top of the driver. The
statements of the hot paths are compiled by SQLAlchemy once per dialect and
set of parameter names, and run on the pooled DB-API connection of the
transaction SQLAlchemy manages, with SQLAlchemy's own bind and result
processors (for many rows, their exact column-at-once equivalents from
``dialects.column_processor``) and its error handling. This happens only
while nobody watches the engine: with any ``before/after_(cursor_)execute``
listener or ``echo`` on, every statement goes through ``Connection.execute``
as usual, so tracing, query logging and query-count tests see everything.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from typing import Any

import sqlalchemy as sa

from . import dialects

__all__ = ["fetch_all", "insert_many", "observed", "write"]

_CACHE_LIMIT = 2048


class Prepared:
    """One statement compiled for one dialect and one set of parameter names."""

    __slots__ = ("sql", "names", "spec", "types", "positional", "returning", "result_types",
                 "_result_processors", "_column_processors")

    def __init__(self, compiled: Any) -> None:
        self.sql: str = compiled.string
        self.positional: bool = compiled.positional
        escaped = compiled.escaped_bind_names or {}
        by_name = {name: bind for bind, name in compiled.bind_names.items()}
        order = compiled.positiontup if compiled.positional else list(by_name)
        processors = compiled._bind_processors
        # (name in the SQL, key in the caller's params, value when absent, processor)
        self.names = tuple(escaped.get(n, n) for n in order)
        self.spec = tuple((by_name[n].key, by_name[n].value, processors.get(n)) for n in order)
        self.types = tuple(by_name[n].type for n in order)
        returning = compiled.effective_returning if compiled.isinsert else None
        self.returning = tuple(returning) if returning else ()
        columns = compiled._result_columns
        self.result_types = tuple(entry[3] for entry in columns) if columns else ()
        self._result_processors: tuple[Any, ...] | None = None
        self._column_processors: tuple[Any, ...] | None = None

    def parameters(self, params: dict[str, Any]) -> Any:
        get = params.get
        values = [process(get(key, default)) if process is not None else get(key, default)
                  for key, default, process in self.spec]
        if self.positional:
            return tuple(values)
        return dict(zip(self.names, values, strict=True))

    def many(self, dialect: Any, names: Sequence[str], columns: Sequence[list[Any]],
             count: int) -> list[Any]:
        """The parameters of ``count`` rows given column by column, each column converted at once."""
        if self._column_processors is None:
            self._column_processors = tuple(
                dialects.column_processor(type_, dialect, process)
                for type_, (_, _, process) in zip(self.types, self.spec, strict=True))
        where = {name: i for i, name in enumerate(names)}
        converted = []
        for (key, default, _), convert in zip(self.spec, self._column_processors, strict=True):
            i = where.get(key)
            values = columns[i] if i is not None else [default] * count
            converted.append(convert(values) if convert is not None else values)
        rows: list[Any] = list(zip(*converted, strict=True)) if converted else [()] * count
        return rows if self.positional else _dicts(self.names, rows)

    def result_processors(self, dialect: Any, description: Any) -> tuple[Any, ...]:
        """(column index, processor) for the columns that need converting."""
        if self._result_processors is None:
            found = (
                (i, type_._cached_result_processor(dialect, entry[1]))
                for i, (type_, entry) in enumerate(zip(self.result_types, description,
                                                       strict=False))
            )
            self._result_processors = tuple((i, p) for i, p in found if p is not None)
        return self._result_processors


def _dicts(names: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    # every row has one value per name; map() builds the dicts without a Python loop
    return list(map(dict, map(zip, repeat(names), rows)))


_prepared: dict[tuple[Any, ...], Prepared | None] = {}


def _eligible(compiled: Any) -> bool:
    """Statements whose execution needs nothing SQLAlchemy does at run time."""
    return not (
        compiled.literal_execute_params or compiled.post_compile_params
        or compiled.insert_prefetch or compiled.update_prefetch
        or compiled.schema_translate_map or compiled._render_postcompile
    )


def _prepare(stmt: Any, dialect: Any, params: Iterable[str]) -> Prepared | None:
    # the names in the caller's order: the library builds them in a stable order,
    # and another order only costs one more compilation
    key = (stmt, dialect, tuple(params))
    try:
        return _prepared[key]
    except KeyError:
        pass
    compiled = stmt.compile(dialect=dialect, column_keys=list(params))
    found = Prepared(compiled) if _eligible(compiled) else None
    if len(_prepared) >= _CACHE_LIMIT:
        _prepared.clear()
    _prepared[key] = found
    return found


def observed(sa_conn: sa.Connection) -> bool:
    """True when listeners or logging want to see each statement on this connection.

    Checked on every statement, so a listener added mid-run sees every later one.
    The library's connections are its own, so only the engine's listeners count.
    """
    if sa_conn._echo:          # what Connection.execute itself looks at for echo
        return True
    engine = sa_conn.engine
    if engine._has_events:
        dispatch = engine.dispatch
        return bool(dispatch.before_cursor_execute or dispatch.after_cursor_execute
                    or dispatch.before_execute or dispatch.after_execute)
    return False


_CURSOR = "rhosocial_ar_cursor"


def _cursor(sa_conn: sa.Connection) -> Any:
    """One cursor per DB-API connection, kept in the pool record's ``info``.

    Every statement's results are consumed before the next runs, so a cursor
    can be reused; SQLAlchemy clears ``info`` whenever it replaces the
    DB-API connection, and the cursor is checked against it anyway.
    """
    fairy = sa_conn.connection
    dbapi_connection = fairy.dbapi_connection
    cached = fairy.info.get(_CURSOR)
    if cached is not None and cached[0] is dbapi_connection:
        return cached[1]
    cursor = dbapi_connection.cursor()  # type: ignore[union-attr]
    fairy.info[_CURSOR] = (dbapi_connection, cursor)
    return cursor


def _forget_cursor(sa_conn: sa.Connection) -> None:
    """A cursor that saw an error is not reused."""
    if sa_conn.invalidated:
        return
    cached = sa_conn.connection.info.pop(_CURSOR, None)
    if cached is not None:
        # the connection may be dead; the error being handled is the one to report
        with contextlib.suppress(Exception):
            cached[1].close()


def _run(sa_conn: sa.Connection, prepared: Prepared, params: dict[str, Any],
         consume: Callable[[Any], Any]) -> Any:
    arguments = prepared.parameters(params)
    cursor = None
    try:
        cursor = _cursor(sa_conn)
        cursor.execute(prepared.sql, arguments)
        return consume(cursor)
    except Exception as exc:
        _forget_cursor(sa_conn)
        # SQLAlchemy's own handling: wraps the driver error (IntegrityError, ...),
        # invalidates a disconnected connection and its pool, runs handle_error
        sa_conn._handle_dbapi_exception(exc, prepared.sql, arguments, cursor, None)
        raise  # not reached: the handler raises


def fetch_all(sa_conn: sa.Connection, stmt: Any, params: dict[str, Any]) -> Sequence[Any]:
    """Every row of a SELECT, with SQLAlchemy's result processing."""
    prepared = None if observed(sa_conn) else _prepare(stmt, sa_conn.dialect, params)
    if prepared is None:
        return sa_conn.execute(stmt, params).all()
    dialect = sa_conn.dialect

    def rows(cursor: Any) -> Sequence[Any]:
        found = cursor.fetchall()
        convert = prepared.result_processors(dialect, cursor.description)
        if not convert:
            return found
        processed = []
        for row in found:
            values = list(row)
            for i, process in convert:
                values[i] = process(values[i])
            processed.append(values)
        return processed

    return _run(sa_conn, prepared, params, rows)  # type: ignore[no-any-return]


def write(sa_conn: sa.Connection, stmt: Any, params: dict[str, Any],
          pk_names: Sequence[str] = ()) -> tuple[int, tuple[Any, ...] | None]:
    """Run an INSERT, UPDATE or DELETE; returns (rowcount, the inserted primary key)."""
    prepared = None if observed(sa_conn) else _prepare(stmt, sa_conn.dialect, params)
    if prepared is None:
        result = sa_conn.execute(stmt, params)
        inserted = result.inserted_primary_key if result.context.isinsert else None
        return result.rowcount, tuple(inserted) if inserted is not None else None

    def outcome(cursor: Any) -> tuple[int, tuple[Any, ...] | None]:
        if prepared.returning:
            row = cursor.fetchone()
            return cursor.rowcount, tuple(row) if row is not None else None
        if not pk_names:
            return cursor.rowcount, None
        given = tuple(params.get(n) for n in pk_names)
        if None not in given:
            return cursor.rowcount, given
        return cursor.rowcount, (cursor.lastrowid,)

    return _run(sa_conn, prepared, params, outcome)  # type: ignore[no-any-return]


def insert_many(sa_conn: sa.Connection, stmt: Any, names: Sequence[str],
                columns: Sequence[list[Any]], count: int) -> None:
    """An INSERT of ``count`` rows, one DB-API ``executemany``; ``columns[i]`` holds ``names[i]``."""
    dialect = sa_conn.dialect
    prepared = None if observed(sa_conn) else _prepare(stmt, dialect, names)
    # where SQLAlchemy turns an executemany INSERT into multi-row INSERTs itself, the
    # driver's own executemany is a round trip per row
    if prepared is None or prepared.returning or dialect.use_insertmanyvalues_wo_returning:
        rows = zip(*columns, strict=True) if columns else [()] * count
        sa_conn.execute(stmt, _dicts(names, rows))
        return
    arguments = prepared.many(dialect, names, columns, count)
    cursor = None
    try:
        cursor = _cursor(sa_conn)
        cursor.executemany(prepared.sql, arguments)
    except Exception as exc:
        _forget_cursor(sa_conn)
        sa_conn._handle_dbapi_exception(exc, prepared.sql, arguments, cursor, None)
        raise  # not reached: the handler raises
