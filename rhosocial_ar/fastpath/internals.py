"""What the fence relies on that SQLAlchemy, PyMySQL and pydantic do not promise, and the verdict.

    internals.check()            # [] when every name below exists and behaves as assumed
    internals.usable()           # the verdict, probed once; False: SQLAlchemy runs everything
    internals.disabled_reason()  # why the fast path is off, or None
    internals.reset()            # forget the verdict (tests that take an internal away)

The fast path (``execution.py`` and its helpers in this subpackage) relies on:

SQLAlchemy
  SQLCompiler._bind_processors            bind name -> the bind processor of its type
  SQLCompiler._result_columns             (key, name, objects, type) per result column
  SQLCompiler._process_parameters_for_postcompile   an IN list rendered for its values
  SQLCompiler.bind_names, positiontup, escaped_bind_names, post_compile_params,
    literal_execute_params, insert_prefetch, update_prefetch, effective_returning
                                          public attributes, behaviour undocumented
  TypeEngine._cached_result_processor     SQLAlchemy's own result processor per column
  TypeEngine._unwrapped_dialect_impl, TypeEngine._is_tuple_type,
    DefaultDialect._bind_typing_render_casts      how an IN list's elements render
  ClauseElement._generate_cache_key       a condition's shape and its values (shapes.py)
  BinaryExpression(left, right, operator, type_=, negate=), BindParameter(key, value,
    type_=, unique=), ExpressionClauseList._construct_for_list
                                          a model column's ``age > 30``, ``age + 1`` and
                                          ``id.between(a, b)`` built directly (expressions.py),
                                          checked equal to what SQLAlchemy builds
  BindParameter's and BinaryExpression's ``__dict__`` (the attributes their constructors
    set), elements._anonymous_label       the same built by copying a template's attributes,
                                          every attribute compared; else the constructors
                                          (shapes.py reads elements' ``__dict__`` too)
  Connection._dbapi_connection            the pooled DB-API connection, unchecked
  Connection._handle_dbapi_exception      wraps a driver error, invalidates on disconnect,
                                          runs handle_error listeners
  Connection._echo, Connection._has_events, Connection._execution_options,
    Engine._has_events, Dialect._has_events,
    Dialect.dispatch.do_execute* / Pool.dispatch.checkout   who watches (guard.py)
  sqlite.DATETIME._storage_format         SQLite datetimes converted in C (processors.py)
PyMySQL (drivers.py; not the fast path: without them connects are not bounded)
  Connection._sock, _read_timeout, _current_timeout
pydantic (loading.py)
  pydantic._internal._model_construction.init_private_attributes   private attributes'
    defaults, as pydantic's constructors set them (else their public default/default_factory)
  BaseModel's ``__dict__`` and ``__pydantic_fields_set__`` slot descriptors, and a
  subclass made with ``type.__new__`` sharing its model's layout (the loader's twin)

If one is missing or misbehaves, the library logs one warning on the
``rhosocial_ar`` logger and every statement goes through
``Connection.execute``: slower, never wrong. A statement that fails to be
prepared at run time goes through ``Connection.execute`` too, with one
warning for all of them (``unprepared``). ``tests/test_fastpath.py``
checks each name on the installed versions.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.dialects import sqlite
from sqlalchemy.sql import operators

from . import expressions
from .expressions import build_arithmetic, build_between, build_comparison, build_like, build_null_test

__all__ = ["check", "disabled_reason", "reset", "unprepared", "usable"]

log = logging.getLogger("rhosocial_ar")

_lock = threading.Lock()
# None: not probed yet; True: the fast path may run; False: SQLAlchemy runs everything
_verdict: bool | None = None
_reason: str | None = None
_unprepared_warned = False
# run when the verdict is reset, to drop what was prepared under the old one
_on_reset: list[Callable[[], None]] = []


def usable() -> bool:
    """Whether the fast path may run; the first call probes (a few milliseconds, once)."""
    if _verdict is None:
        with _lock:
            if _verdict is None:
                problems = check()
                if problems:
                    _disable("; ".join(problems))
                else:
                    _set(True, None)
    return bool(_verdict)


def unprepared(what: str) -> None:
    """A statement the fast path could not prepare: SQLAlchemy runs it from now on.

    An internal that changed makes every statement fail here, so every one
    goes through SQLAlchemy, with one warning; a statement of its own kind
    (text SQLAlchemy reads otherwise than this release assumed) costs only
    itself. The probe runs again: if it now finds a problem, everything goes
    through SQLAlchemy at once.
    """
    global _unprepared_warned
    problems = check()
    with _lock:
        if problems:
            if _verdict is not False:
                _disable("; ".join(problems))
            return
        if not _unprepared_warned:
            _unprepared_warned = True
            log.warning("rhosocial_ar: a statement the fast path could not prepare goes through "
                        "SQLAlchemy's Connection.execute (slower, same results), as will any "
                        "other such: %s", what)


def disabled_reason() -> str | None:
    return _reason


def reset() -> None:
    """Forget the verdict and what was prepared under it; the next statement probes again."""
    global _unprepared_warned
    with _lock:
        _set(None, None)
        _unprepared_warned = False
    for forget in _on_reset:
        forget()


def on_reset(forget: Callable[[], None]) -> None:
    _on_reset.append(forget)


def _set(verdict: bool | None, reason: str | None) -> None:
    global _verdict, _reason
    _verdict, _reason = verdict, reason


def _disable(reason: str) -> None:
    _set(False, reason)
    log.warning("rhosocial_ar: the fast path is off, every statement goes through "
                "SQLAlchemy's Connection.execute (slower, same results): %s", reason)


# -- the probe ----------------------------------------------------------------------


def check() -> list[str]:
    """Each internal the fast path relies on, tried on a throwaway SQLite engine."""
    problems: list[str] = []
    for name, probe in _PROBES:
        try:
            problem = probe()
        except Exception as exc:  # any failure of an internal is a finding, not a crash
            problem = f"{type(exc).__name__}: {exc}"
        if problem:
            problems.append(f"{name}: {problem}")
    return problems


def _sample() -> tuple[sa.Table, Any]:
    table = sa.Table("probe", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("at", sa.DateTime))
    return table, sa.create_engine("sqlite://").dialect


def _compiled_select() -> Any:
    table, dialect = _sample()
    stmt = sa.select(table.c.id, table.c.at).where(
        table.c.id.in_(sa.bindparam("ids", expanding=True)), table.c.at > sa.bindparam("after"))
    return stmt.compile(dialect=dialect), table


def _bind_processors() -> str | None:
    compiled, _ = _compiled_select()
    processors = compiled._bind_processors
    if not callable(processors.get("after")):
        return "no processor for a DateTime parameter"
    return None


def _result_columns() -> str | None:
    compiled, _ = _compiled_select()
    columns = compiled._result_columns
    if [entry[1] for entry in columns] != ["id", "at"] \
            or not all(isinstance(entry[3], sa.types.TypeEngine) for entry in columns):
        return f"unexpected entries {columns!r}"
    return None


def _postcompile() -> str | None:
    compiled, _ = _compiled_select()
    at = datetime.datetime(2024, 1, 1)
    state = compiled._process_parameters_for_postcompile({"ids": [1, 2], "after": at})
    if "IN (?, ?)" not in state.statement or len(state.positiontup) != 3 \
            or not set(state.positiontup) <= set(state.parameters) \
            or not isinstance(state.processors, dict):
        return f"unexpected rendering {state.statement!r}"
    return None


def _compiler_attributes() -> str | None:
    compiled, table = _compiled_select()
    names = set(compiled.bind_names.values())
    if names != {"ids", "after"} or list(compiled.positiontup) != ["ids", "after"]:
        return f"bind_names {compiled.bind_names!r}, positiontup {compiled.positiontup!r}"
    if [compiled.bind_names[b] for b in compiled.post_compile_params] != ["ids"]:
        return "post_compile_params does not hold the IN list"
    for attribute in ("escaped_bind_names", "literal_execute_params", "insert_prefetch",
                      "update_prefetch"):
        getattr(compiled, attribute)
    insert = table.insert().returning(table.c.id).compile(dialect=compiled.dialect)
    if not insert.isinsert or list(insert.effective_returning) != [table.c.id]:
        return "effective_returning does not list the RETURNING columns"
    return None


def _result_processor() -> str | None:
    _, dialect = _sample()
    process: Any = sa.DateTime()._cached_result_processor(dialect, None)
    if process is None or process("2024-01-01 10:00:00.000000") != datetime.datetime(2024, 1, 1, 10):
        return "SQLite's DateTime result processor did not parse a stored value"
    return None


def _list_rendering() -> str | None:
    _, dialect = _sample()
    impl = sa.Integer()._unwrapped_dialect_impl(dialect)
    if impl._is_tuple_type is not False or not isinstance(dialect._bind_typing_render_casts, bool):
        return "type or dialect flags changed"
    return None


def _cache_key() -> str | None:
    table, _ = _sample()
    one, two = (table.c.id > 1)._generate_cache_key(), (table.c.id > 2)._generate_cache_key()
    if one is None or two is None or one.key != two.key \
            or [b.value for b in two.bindparams] != [2]:
        return "equal shapes do not share a key, or the key does not carry the values"
    return None


def _direct_expressions() -> str | None:
    # copying attributes first; if that differs, the constructors; if those differ, SQLAlchemy
    expressions.copying(True)
    if _built_as_sqlalchemy_builds() is None:
        return None
    expressions.copying(False)
    found = _built_as_sqlalchemy_builds()
    if found is None:
        log.debug("rhosocial_ar: expressions built through their constructors (%s)", found)
    return found


def _built_as_sqlalchemy_builds() -> str | None:
    table = sa.Table("probe", sa.MetaData(), sa.Column("n", sa.Integer), sa.Column("s", sa.String(9)))
    n, s = table.c.n, table.c.s
    pairs = [(n > 5, build_comparison(n, 5, operators.gt, operators.le)),
             (s == "x", build_comparison(s, "x", operators.eq, operators.ne)),
             (n + 1, build_arithmetic(n, 1, operators.add)),
             (n.between(1, 2), build_between(n, 1, 2, False)),
             (n.between(1, 2, symmetric=True), build_between(n, 1, 2, True)),
             (s.like("x%"), build_like(s, "x%", operators.like_op, operators.not_like_op, None)),
             (s.not_like("x/%", escape="/"),
              build_like(s, "x/%", operators.not_like_op, operators.like_op, "/")),
             (s.is_(None), build_null_test(s, operators.is_, operators.is_not)),
             (s != None, build_null_test(s, operators.is_not, operators.is_))]  # noqa: E711
    for standard, direct in pairs:
        for a, b in ((standard, direct), (~standard, ~direct)) if direct.negate else ((standard, direct),):
            a_key, b_key = a._generate_cache_key(), b._generate_cache_key()
            if str(a) != str(b) or a_key is None or b_key is None or a_key.key != b_key.key \
                    or type(a.type) is not type(b.type) or a.negate is not b.negate \
                    or getattr(a.right, "type", None) is not getattr(b.right, "type", None) \
                    or a.modifiers != b.modifiers \
                    or getattr(a.right, "group", None) is not getattr(b.right, "group", None):
                return f"{a} built directly is not what SQLAlchemy builds"
        if _attributes(standard) != _attributes(direct):
            return f"{standard} built directly has other attributes than SQLAlchemy's"
    both = sa.and_(build_comparison(n, 1, operators.gt, operators.le),
                   build_comparison(n, 2, operators.lt, operators.ge))
    if both.compile().params != {"n_1": 1, "n_2": 2}:
        return "two parameters built directly share one name"
    made, copied = sa.bindparam("n", 1, type_=n.type, unique=True), both.clauses[0].right
    made_key: Any = made.key       # an _anonymous_label, a str with a quote attribute
    copied_key: Any = copied.key
    if type(made_key) is not type(copied_key) or made_key.quote != copied_key.quote \
            or made_key.replace(str(id(made)), "") != copied_key.replace(str(id(copied)), ""):
        return f"a parameter built directly is named {copied_key!r}, not like {made_key!r}"
    return None


def _attributes(expr: Any) -> list[tuple[str, Any]]:
    """An expression's and its parameters' attributes, but for what each one's identity sets."""
    own = {"key", "_anon_map_key", "_identifying_key", "_orig", "left", "right", "_memoized_keys"}
    found = []
    for element in (expr, expr.right, *getattr(expr.right, "clauses", ())):
        if isinstance(element, (sa.BindParameter, sa.BinaryExpression)):
            memoized = vars(element).get("_memoized_keys", ())   # computed when first asked
            found += sorted((name, type(element).__name__ + repr(value))
                            for name, value in vars(element).items()
                            if name not in own and name not in memoized)
    return found


def _connection() -> str | None:
    engine = sa.create_engine("sqlite://")
    try:
        with engine.connect() as conn:
            flags = (conn._echo, conn._has_events, engine._has_events, engine.dialect._has_events)
            if not all(isinstance(flag, bool) for flag in flags):
                return f"flags are not booleans: {flags!r}"
            if conn._dbapi_connection is None or not isinstance(conn._execution_options, dict):
                return "no pooled connection or execution options"
            for events in (engine.dialect.dispatch.do_execute, engine.pool.dispatch.checkout):
                bool(events)
            dbapi: Any = conn._dbapi_connection.dbapi_connection
            try:
                dbapi.cursor().execute("SELECT * FROM no_such_table")
            except Exception as exc:
                try:
                    conn._handle_dbapi_exception(exc, "SELECT", (), None, None)
                except sa.exc.OperationalError:
                    return None
            return "_handle_dbapi_exception did not raise SQLAlchemy's wrapped error"
    finally:
        engine.dispose()


def _sqlite_datetime() -> str | None:
    _, dialect = _sample()
    impl = sa.DateTime().dialect_impl(dialect)
    if type(impl) is not sqlite.DATETIME or not isinstance(impl._storage_format, str):
        return "SQLite's DATETIME has no storage format"
    return None


def _pydantic_slots() -> str | None:
    slots = vars(BaseModel)
    for name in ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__",
                 "__pydantic_private__"):
        if not hasattr(slots.get(name), "__set__"):
            return f"BaseModel.{name} is not a slot"
    return None


def _pydantic_private_init() -> str | None:
    from . import loading

    if loading._init_private is loading._defaults_of_private_attributes:
        return "not importable: loaded records' private attributes come from their public defaults"
    return None


_PROBES: tuple[tuple[str, Callable[[], str | None]], ...] = (
    ("SQLCompiler._bind_processors", _bind_processors),
    ("SQLCompiler._result_columns", _result_columns),
    ("SQLCompiler._process_parameters_for_postcompile", _postcompile),
    ("SQLCompiler bind_names/positiontup/post_compile_params/...", _compiler_attributes),
    ("TypeEngine._cached_result_processor", _result_processor),
    ("TypeEngine._unwrapped_dialect_impl/_is_tuple_type", _list_rendering),
    ("ClauseElement._generate_cache_key", _cache_key),
    ("BinaryExpression/BindParameter built directly", _direct_expressions),
    ("Connection._echo/_has_events/_dbapi_connection/_handle_dbapi_exception", _connection),
    ("sqlite.DATETIME._storage_format", _sqlite_datetime),
    ("pydantic BaseModel slots", _pydantic_slots),
    ("pydantic._internal._model_construction.init_private_attributes", _pydantic_private_init),
)
