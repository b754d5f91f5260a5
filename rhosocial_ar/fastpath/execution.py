"""Running statements: through SQLAlchemy, or straight on its DB-API connection.

    rows = fetch_all(sa_conn, User.__ar_meta__.find_stmt, {'_ar_pk_0': 1})
    key = insert(sa_conn, User.__ar_meta__.insert_stmt, values, ('name',), ('id',))
    count = write(sa_conn, User.__ar_meta__.update_stmt, {'name': 'ann', '_ar_pk_0': 1})

SQLAlchemy's ``Connection.execute`` costs tens of microseconds per call
(cache key, execution context, result object) on top of the driver. The
statements of the hot paths are compiled by SQLAlchemy once per dialect and
set of parameter names, and run on the pooled DB-API connection of the
transaction SQLAlchemy manages, with SQLAlchemy's own bind and result
processors (for many rows, their exact column-at-once equivalents from
``processors.column_processor``) and its error handling. This happens only
while nobody would notice (``guard.py``: no listener, no ``echo``, no
execution option that changes what is sent) and while every internal it
relies on is there (``internals.py``); otherwise the statement goes through
``Connection.execute`` as usual.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from itertools import chain, repeat
from typing import Any, NoReturn, TypeVar

import sqlalchemy as sa

from . import internals, postcompile, processors
from .guard import watched
from .loading import loader
from .placeholders import Placeholders
from .source import define

__all__ = ["fetch", "fetch_all", "fetch_records", "insert", "insert_many", "insert_rows", "write"]

R = TypeVar("R")
# (column index, SQLAlchemy result processor) for the columns that need converting
Converters = tuple[tuple[int, Callable[[Any], Any]], ...]

_CACHE_LIMIT = 2048


class Prepared:
    """One statement compiled for one dialect and one set of parameter names."""

    __slots__ = ("sql", "names", "spec", "types", "positional", "returning", "result_types",
                 "parameters", "loaders", "_result_processors", "_column_processors", "_expanding",
                 "_rows_sql", "_row_template", "_compiled", "_form", "_plan")

    def __init__(self, compiled: Any, keys: Iterable[str] = ()) -> None:
        escaped = compiled.escaped_bind_names or {}
        by_name = {name: bind for bind, name in compiled.bind_names.items()}
        # pyformat drivers (psycopg2, PyMySQL) take %s and a tuple as well, and fill a
        # tuple faster than a dict; with IN lists, statement() does the same per length
        form = Placeholders.of(compiled) \
            if compiled.post_compile_params or not compiled.positional else None
        order: Sequence[str]
        if form is not None and not form.expanding:
            self.sql, self.positional, order = form.sql, True, form.order
        else:
            self.sql, self.positional = compiled.string, compiled.positional
            order = compiled.positiontup if compiled.positional else list(by_name)
        bind_processors = compiled._bind_processors
        # (name in the SQL, key in the caller's params, value when absent, processor)
        self.names = tuple(escaped.get(n, n) for n in order)
        self.spec = tuple((by_name[n].key, by_name[n].value, bind_processors.get(n))
                          for n in order)
        self.types = tuple(by_name[n].type for n in order)
        returning = compiled.effective_returning if compiled.isinsert else None
        self.returning = tuple(returning) if returning else ()
        columns = compiled._result_columns
        self.result_types = tuple(entry[3] for entry in columns) if columns else ()
        dialect = compiled.dialect
        self.parameters: Callable[[dict[str, Any]], Any] = _arguments_builder(
            self.names, tuple((key, default, processors.bind_processor(type_, dialect, process))
                              for type_, (key, default, process) in zip(self.types, self.spec,
                                                                        strict=True)),
            self.positional, frozenset(keys))
        # the record builders for its rows, per (model, column names): see fetch_records()
        self.loaders: dict[tuple[Any, Sequence[str]], Any] = {}
        self._result_processors: Converters | None = None
        self._column_processors: tuple[Any, ...] | None = None
        # an INSERT's one-row VALUES with %s ('' when it has none), its multi-row forms
        self._row_template: str | None = None
        self._rows_sql: dict[int, str] = {}
        # IN lists (expanding parameters) are rendered per execution
        self._expanding = compiled if compiled.post_compile_params else None
        # the positional form with its lists (see placeholders.py), and how to fill it
        self._compiled = compiled
        self._form = form
        self._plan: tuple[tuple[str, bool, Any], ...] | None = None

    def statement(self, params: dict[str, Any]) -> tuple[str, Any]:
        """The SQL and the DB-API arguments for one execution."""
        if self._expanding is None:
            return self.sql, self.parameters(params)
        get = params.get
        by_name = {name: get(key, default)
                   for name, (key, default, _) in zip(self.names, self.spec, strict=True)}
        form = self._form
        if form is not None:
            found = self._positional(form, by_name)
            if found is not None:
                return found
        if self.positional:        # numeric paramstyles (asyncpg): its rendering, kept per length
            found = postcompile.statement(self._expanding, by_name)
            if found is not None:
                return found
        # what SQLAlchemy's execution context does with an expanding parameter
        state = self._expanding._process_parameters_for_postcompile(by_name)
        values, process = state.parameters, state.processors
        if self.positional:
            return state.statement, tuple(
                process[n](values[n]) if n in process else values[n]
                for n in state.positiontup)
        return state.statement, {
            n: process[n](v) if n in process else v for n, v in values.items()}

    def _positional(self, form: Placeholders, by_name: dict[str, Any]) -> tuple[str, Any] | None:
        """The SQL for these list lengths and a flat tuple of the values, converted.

        None for the lists SQLAlchemy renders in its own way: empty ones,
        lists of tuples or lists (row values, arrays), and other collections.
        """
        lengths = {}
        for name in form.expanding:
            values = by_name[name]
            if type(values) not in (list, tuple) or (
                    values and isinstance(values[0], Sequence)
                    and not isinstance(values[0], str | bytes)):
                return None
            lengths[name] = len(values)
        sql = form.sql_for(lengths)
        if sql is None:
            return None
        if self._plan is None:
            self._plan = self._positional_plan(form)
        arguments: list[Any] = []
        for name, is_list, process in self._plan:
            value = by_name[name]
            if is_list:
                arguments.extend(value if process is None else process(value))
            else:
                arguments.append(value if process is None else process(value))
        return sql, tuple(arguments)

    def _positional_plan(self, form: Placeholders) -> tuple[tuple[str, bool, Any], ...]:
        """(name, is a list, converter) per placeholder: SQLAlchemy's processor, per value or list."""
        dialect = self._compiled.dialect
        by_name = {name: (type_, process) for name, type_, (_, _, process)
                   in zip(self.names, self.types, self.spec, strict=True)}
        plan = []
        for name in form.order:
            type_, process = by_name[name]
            is_list = name in form.expanding
            convert = (processors.column_processor if is_list else processors.bind_processor)(
                type_, dialect, process)
            plan.append((name, is_list, convert))
        return tuple(plan)

    def many(self, dialect: Any, names: Sequence[str], columns: Sequence[list[Any]],
             count: int) -> tuple[str, list[Any]]:
        """The SQL and the parameters of ``count`` rows given column by column, for executemany.

        Each column is converted at once; the rows are tuples, or dicts for
        the few pyformat statements without a positional form.
        """
        converted = self._converted_columns(dialect, names, columns, count)
        rows: list[Any] = list(zip(*converted, strict=True)) if converted else [()] * count
        return self.sql, rows if self.positional else _dicts(self.names, rows)

    def _converted_columns(self, dialect: Any, names: Sequence[str], columns: Sequence[list[Any]],
                           count: int) -> list[list[Any]]:
        """One list of values per parameter, in the statement's order, converted for the driver."""
        if self._column_processors is None:
            self._column_processors = tuple(
                processors.column_processor(type_, dialect, process)
                for type_, (_, _, process) in zip(self.types, self.spec, strict=True))
        where = {name: i for i, name in enumerate(names)}
        converted = []
        for (key, default, _), convert in zip(self.spec, self._column_processors, strict=True):
            i = where.get(key)
            values = columns[i] if i is not None else [default] * count
            converted.append(convert(values) if convert is not None else values)
        return converted

    def rows_statement(self, count: int) -> str | None:
        """This single-row INSERT as one of ``count`` rows with positional ``%s`` parameters.

        What SQLAlchemy's "insertmanyvalues" sends for psycopg2, minus renaming
        every parameter of every row: psycopg2 fills ``%s`` from a tuple far
        faster than thousands of ``%(name)s`` from a dict. An upsert's ``ON
        CONFLICT`` clause without parameters follows the rows once, as in the
        multi-row statement SQLAlchemy compiles. None when the SQL is not the
        plain ``INSERT ... VALUES (...)`` this can repeat.
        """
        if self._row_template is None:
            self._row_template = self._positional_row()
        if not self._row_template:
            return None
        found = self._rows_sql.get(count)
        if found is None:
            if len(self._rows_sql) > 8:    # a batch size and its remainder, per call
                self._rows_sql.clear()
            head, _, rest = self.sql.rpartition(" VALUES ")
            tail = rest[len(self._row_template):]
            rows = ", ".join([self._row_template] * count)
            found = self._rows_sql[count] = f"{head} VALUES {rows}{tail}"
        return found

    def _positional_row(self) -> str:
        """The ``(%s, %s, ...)`` of the VALUES, or '' when this is not such an INSERT."""
        head, sep, rest = self.sql.rpartition(" VALUES ")
        if not sep or self.returning or not self.positional \
                or self._compiled.dialect.paramstyle not in ("format", "pyformat"):
            return ""
        row = _first_group(rest)
        # every parameter in the row: the flat values follow the placeholders' order
        if not row or "%s" in head or "%s" not in row or "%s" in rest[len(row):]:
            return ""
        return row

    def result_processors(self, dialect: Any, cursor: Any) -> Converters:
        """(column index, processor) for the columns that need converting."""
        if self._result_processors is None:
            description = cursor.description   # not free: psycopg2 builds it on each access
            found = (
                (i, type_._cached_result_processor(dialect, entry[1]))
                for i, (type_, entry) in enumerate(zip(self.result_types, description,
                                                       strict=False))
            )
            self._result_processors = tuple((i, p) for i, p in found if p is not None)
        return self._result_processors


def _first_group(text: str) -> str:
    """``text``'s leading parenthesized group, to its matching parenthesis; '' when there is
    none or it holds a quote (a literal could hold a parenthesis)."""
    if not text.startswith("("):
        return ""
    depth = 0
    for i, char in enumerate(text):
        if char in "'\"":
            return ""
        depth += (char == "(") - (char == ")")
        if depth == 0:
            return text[:i + 1]
    return ""


def _arguments_builder(names: tuple[str, ...], spec: tuple[Any, ...], positional: bool,
                       given: frozenset[str]) -> Callable[[dict[str, Any]], Any]:
    """``params -> DB-API arguments``, written out for one statement's parameters.

    Per value: the caller's value (``given`` keys are always in ``params``;
    others may be, else the bind's own value), through SQLAlchemy's bind
    processor when the type has one; a tuple for positional paramstyles, else
    a dict. Generated because it runs for every statement and every row of
    an executemany.
    """
    namespace: dict[str, Any] = {}
    values = []
    for i, (key, default, process) in enumerate(spec):
        namespace[f"d{i}"] = default
        value = f"params[{key!r}]" if key in given else f"get({key!r}, d{i})"
        if process is not None:
            namespace[f"p{i}"] = process
            value = f"p{i}({value})"
        values.append(value)
    if positional:
        built = f"({''.join(v + ', ' for v in values)})"
    else:
        built = "{" + ", ".join(f"{n!r}: {v}" for n, v in zip(names, values, strict=True)) + "}"
    source = f"def arguments(params):\n    get = params.get\n    return {built}\n"
    return define(source, "arguments", namespace, "arguments")


def _dicts(names: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    # every row has one value per name; map() builds the dicts without a Python loop
    return list(map(dict, map(zip, repeat(names), rows)))


_prepared: dict[tuple[Any, ...], Prepared | None] = {}
_UNSEEN: Any = object()


def _eligible(stmt: Any, compiled: Any) -> bool:
    """Statements whose execution needs nothing SQLAlchemy does at run time."""
    return not (
        stmt.get_execution_options()
        or compiled.literal_execute_params
        or (compiled.post_compile_params and compiled.escaped_bind_names)
        or compiled.insert_prefetch or compiled.update_prefetch
        # before 2.0.55 and 2.1.2 SQLAlchemy took literal '%(name)s' text for a parameter
        # on qmark/numeric dialects (its issue 13609): a position with no bind, which its
        # own execute fails on too; that statement alone is left to it
        or (compiled.positional
            and not set(compiled.positiontup) <= set(compiled.bind_names.values()))
    )


def _prepare(stmt: Any, dialect: Any, keys: Iterable[str]) -> Prepared | None:
    # the names in the caller's order: the library builds them in a stable order,
    # and another order only costs one more compilation
    key = (stmt, dialect, keys if isinstance(keys, tuple) else tuple(keys))
    try:
        return _prepared[key]
    except KeyError:
        pass
    try:
        compiled = stmt.compile(dialect=dialect, column_keys=list(key[2]))
    except Exception:   # SQLAlchemy's own execute raises it, as the caller expects
        return None
    try:
        found = Prepared(compiled, key[2]) if _eligible(stmt, compiled) else None
    except Exception as exc:  # SQLAlchemy runs this statement, from now on (see internals)
        internals.unprepared(f"{compiled.string[:80]!r}: {type(exc).__name__}: {exc}")
        found = None
    if len(_prepared) >= _CACHE_LIMIT:
        _prepared.clear()
    _prepared[key] = found
    return found


internals.on_reset(_prepared.clear)


_CURSOR = "rhosocial_ar_cursor"


def _cursor(sa_conn: sa.Connection) -> Any:
    """One cursor per DB-API connection, kept in the pool record's ``info``.

    Every statement's results are consumed before the next runs, so a cursor
    can be reused; SQLAlchemy clears ``info`` whenever it replaces the
    DB-API connection, and the cursor is checked against it anyway.
    """
    # the pooled connection, past the property that revalidates one that was invalidated
    fairy = sa_conn._dbapi_connection or sa_conn.connection
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
         consume: Callable[..., Any] | None = None, *args: Any) -> Any:
    """Run a statement on the cursor; returns ``consume(cursor, *args)``, or the cursor itself."""
    if prepared._expanding is None:
        sql, arguments = prepared.sql, prepared.parameters(params)
    else:
        sql, arguments = prepared.statement(params)
    cursor = None
    try:   # consuming is inside: drivers may fail while rows are fetched
        cursor = _cursor(sa_conn)
        cursor.execute(sql, arguments)
        return cursor if consume is None else consume(cursor, *args)
    except Exception as exc:
        _failed(sa_conn, exc, sql, arguments, cursor)


def _failed(sa_conn: sa.Connection, exc: Exception, sql: str, arguments: Any,
            cursor: Any) -> NoReturn:
    _forget_cursor(sa_conn)
    # SQLAlchemy's own handling: wraps the driver error (IntegrityError, ...),
    # invalidates a disconnected connection and its pool, runs handle_error
    sa_conn._handle_dbapi_exception(exc, sql, arguments, cursor, None)
    raise exc  # not reached: the handler raises


def fetch(sa_conn: sa.Connection, stmt: Any, params: dict[str, Any],
          consume: Callable[[Iterable[Sequence[Any]], Converters], R]) -> R:
    """Run a SELECT and return ``consume(rows, converters)``.

    On the fast path ``rows`` is the DB-API cursor itself (rows are not all
    kept at once) and ``converters`` lists SQLAlchemy's result processors as
    (column index, processor) for the columns that need one; through
    SQLAlchemy the rows are its processed ``Row`` objects and there are none.
    """
    prepared = _fast(sa_conn, stmt, tuple(params))
    if prepared is None:
        return consume(sa_conn.execute(stmt, params), ())
    dialect = sa_conn.dialect
    return _run(sa_conn, prepared, params, lambda cursor: consume(  # type: ignore[no-any-return]
        _rows(cursor, dialect), prepared.result_processors(dialect, cursor)))


def fetch_records(sa_conn: sa.Connection, origin: str | None, stmt: Any, params: dict[str, Any],
                  model: Any, names: Sequence[str]) -> list[Any]:
    """Records of ``model`` from a SELECT of its columns ``names``, in that order.

    The arguments follow ``routing.read``'s ``work(sa_conn, origin, *args)``.
    """
    prepared = _fast(sa_conn, stmt, tuple(params))
    if prepared is None:
        return loader(model, names)(sa_conn.execute(stmt, params), origin)
    return _run(sa_conn, prepared, params, _load,  # type: ignore[no-any-return]
                prepared, sa_conn.dialect, model, names, origin)


def _load(cursor: Any, prepared: Prepared, dialect: Any, model: Any, names: Sequence[str],
          origin: str | None) -> list[Any]:
    # the statement fixes the converters, so its loader is looked up once
    build = prepared.loaders.get((model, names))
    if build is None:
        build = prepared.loaders[model, names] = loader(
            model, names, prepared.result_processors(dialect, cursor))
    return build(_rows(cursor, dialect), origin)  # type: ignore[no-any-return]


def _rows(cursor: Any, dialect: Any) -> Iterable[Sequence[Any]]:
    """What to read the rows from: the cursor itself where it reads them on demand (sqlite3).

    psycopg2's and PyMySQL's cursors already hold the whole result, and
    ``fetchall()`` hands it over in one C call, cheaper than a step per row.
    """
    return cursor if dialect.name == "sqlite" else cursor.fetchall()


def _converted(rows: Iterable[Sequence[Any]], converters: Converters) -> list[Sequence[Any]]:
    if not converters:
        return list(rows)
    converted: list[Sequence[Any]] = []
    for row in rows:
        values = list(row)
        for i, process in converters:
            values[i] = process(values[i])
        converted.append(values)
    return converted


def fetch_all(sa_conn: sa.Connection, stmt: Any, params: dict[str, Any]) -> Sequence[Any]:
    """Every row of a SELECT, with SQLAlchemy's result processing."""
    return fetch(sa_conn, stmt, params, _converted)


def _fast(sa_conn: sa.Connection, stmt: Any, keys: tuple[str, ...]) -> Prepared | None:
    """The compiled statement to run on the cursor, or None: SQLAlchemy runs it."""
    if not internals.usable() or watched(sa_conn):
        return None
    prepared = _prepared.get((stmt, sa_conn.dialect, keys), _UNSEEN)
    if prepared is _UNSEEN:
        prepared = _prepare(stmt, sa_conn.dialect, keys)
    return prepared  # type: ignore[no-any-return]


def insert(sa_conn: sa.Connection, stmt: Any, values: dict[str, Any], keys: tuple[str, ...],
           pk_names: Sequence[str]) -> tuple[Any, ...] | None:
    """INSERT one row, the ``keys`` of ``values``; returns its primary key, if known."""
    prepared = _fast(sa_conn, stmt, keys)
    if prepared is None:
        inserted = sa_conn.execute(stmt, {k: values[k] for k in keys}).inserted_primary_key
        return tuple(inserted) if inserted is not None else None
    arguments = prepared.parameters(values)   # _run's work, inline: once per record saved
    cursor = None
    try:
        cursor = _cursor(sa_conn)
        cursor.execute(prepared.sql, arguments)
    except Exception as exc:
        _failed(sa_conn, exc, prepared.sql, arguments, cursor)
    if prepared.returning:
        row = cursor.fetchone()
        return tuple(row) if row is not None else None
    if len(pk_names) == 1:   # given, or the autoincrement value
        given = values.get(pk_names[0])
        return (given if given is not None else cursor.lastrowid,)
    return tuple([values.get(n) for n in pk_names]) if pk_names else None


def write(sa_conn: sa.Connection, stmt: Any, params: dict[str, Any],
          keys: tuple[str, ...] | None = None) -> int:
    """Run an UPDATE or DELETE (or an INSERT whose key is not needed); returns the row count.

    ``keys``: the parameters to send when ``params`` holds more.
    """
    if keys is None:
        keys = tuple(params)
    prepared = _fast(sa_conn, stmt, keys)
    if prepared is None:
        return int(sa_conn.execute(stmt, {k: params[k] for k in keys}).rowcount)
    return int(_run(sa_conn, prepared, params).rowcount)


def insert_many(sa_conn: sa.Connection, stmt: Any, names: Sequence[str],
                columns: Sequence[list[Any]], count: int) -> None:
    """An INSERT of ``count`` rows, one DB-API ``executemany``; ``columns[i]`` holds ``names[i]``."""
    dialect = sa_conn.dialect
    prepared = None if not internals.usable() or watched(sa_conn) \
        else _prepare(stmt, dialect, names)
    # psycopg2's executemany is a round trip per row: one multi-row INSERT per batch instead
    if count > 1 and _rows_at_once(sa_conn, prepared, names, columns, count):
        return
    # other drivers SQLAlchemy batches itself (insertmanyvalues) go through it
    if prepared is None or prepared.returning or dialect.use_insertmanyvalues_wo_returning:
        rows = zip(*columns, strict=True) if columns else [()] * count
        sa_conn.execute(stmt, _dicts(names, rows))
        return
    sql, rows = prepared.many(dialect, names, columns, count)
    _run_sql(sa_conn, sql, rows, cursor_method="executemany")


def insert_rows(sa_conn: sa.Connection, stmt: Any, names: Sequence[str],
                columns: Sequence[list[Any]], start: int, count: int) -> bool:
    """``stmt``, a one-row INSERT or upsert, run for rows ``start`` to ``start + count`` of
    ``columns`` as one statement, on psycopg2.

    The SQL SQLAlchemy compiles for the ``count``-row statement, made from the
    one-row form compiled once instead of once per row count (thousands of
    parameters compile in tens of milliseconds). False, having run nothing,
    where this is not possible: the caller runs its own statement.
    """
    if sa_conn.dialect.driver != "psycopg2" or not internals.usable() or watched(sa_conn):
        return False
    rows = [column[start:start + count] for column in columns]
    return _rows_at_once(sa_conn, _prepare(stmt, sa_conn.dialect, names), names, rows, count)


def _rows_at_once(sa_conn: sa.Connection, prepared: Prepared | None, names: Sequence[str],
                  columns: Sequence[list[Any]], count: int) -> bool:
    dialect = sa_conn.dialect
    rows_sql = (prepared.rows_statement(count) if prepared is not None
                and dialect.driver == "psycopg2" else None)
    if rows_sql is None:
        return False
    assert prepared is not None
    flat = tuple(chain.from_iterable(zip(*prepared._converted_columns(
        dialect, names, columns, count), strict=True)))
    _run_sql(sa_conn, rows_sql, flat, cursor_method="execute")
    return True


def _run_sql(sa_conn: sa.Connection, sql: str, arguments: Any, cursor_method: str) -> None:
    cursor = None
    try:
        cursor = _cursor(sa_conn)
        getattr(cursor, cursor_method)(sql, arguments)
    except Exception as exc:
        _failed(sa_conn, exc, sql, arguments, cursor)
