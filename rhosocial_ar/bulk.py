"""Writing many rows at once: bulk inserts and single-statement upserts.

    User.bulk_insert([{'username': 'ann'}, {'username': 'bob'}])
    Stat.bulk_insert_or_update(rows, conflict_keys=['user_id'], batch_size=1000)

Rows are validated by the model before anything is sent; hooks do not run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import chain, repeat
from operator import is_, itemgetter
from typing import Any, NamedTuple

import sqlalchemy as sa

from . import dialects, fastpath, routing
from .errors import QueryError
from .mixins import utc_now
from .transaction import atomic, current_frame

__all__ = ["insert_many", "upsert_many", "upsert_one"]


class Group(NamedTuple):
    """Rows that set the same columns, held column by column."""

    names: tuple[str, ...]
    columns: list[list[Any]]     # columns[i] holds the values of names[i], one per row
    size: int                    # the number of rows

    def rows(self) -> list[dict[str, Any]]:
        return [dict(zip(self.names, row, strict=True)) for row in self._tuples()]

    def _tuples(self) -> Iterable[tuple[Any, ...]]:
        return zip(*self.columns, strict=True) if self.columns else [()] * self.size


def rows_for_write(model: Any, rows: Iterable[Any]) -> list[Group]:
    """Validate rows (dicts or records); their column values, grouped by the columns they set.

    Database-defaulted columns (autoincrement keys, server defaults) given as
    None are left out, the mixins' timestamps and lock version filled in.
    Groups come in the order of their first row, rows in the order given.
    """
    meta = model.__ar_meta__
    values = _field_values(model, list(rows))
    if not values:
        return []
    now = utc_now()
    same = _uniform(meta, values, now)
    if same is not None:
        found = [same]
    else:
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in values:
            written = _written(meta, row, now)
            groups.setdefault(tuple(written), []).append(written)
        found = [Group(names, [list(map(itemgetter(n), group)) for n in names], len(group))
                 for names, group in groups.items()]
    for group in found:   # every row checked before the first batch is sent
        meta.fit_columns(group.names, group.columns)
    return found


def _field_values(model: Any, rows: list[Any]) -> list[dict[str, Any]]:
    """Each row's field values: a record's own (validated already), others validated by the model."""
    kinds = set(map(type, rows))
    if not any(issubclass(kind, model) for kind in kinds):
        return model.__ar_meta__.validate_rows(rows)  # type: ignore[no-any-return]
    if all(issubclass(kind, model) for kind in kinds):
        return list(map(vars, rows))
    return [vars(row) if isinstance(row, model) else model.__ar_meta__.validate_rows([row])[0]
            for row in rows]


def _written(meta: Any, values: dict[str, Any], now: Any) -> dict[str, Any]:
    """The columns one row writes, and their values."""
    written = {n: values[n] for n in meta.names if n in values}
    for name in meta.defaulted_by_database:
        if written.get(name) is None:
            written.pop(name, None)
    for stamp in (meta.created_column, meta.updated_column):
        if stamp and written.get(stamp) is None:
            written[stamp] = now
    if meta.lock_column and written.get(meta.lock_column) is None:
        written[meta.lock_column] = 0
    return written


def _uniform(meta: Any, values: list[dict[str, Any]], now: Any) -> Group | None:
    """What ``_written`` gives every row, column by column, when all rows write the same columns.

    None when some rows lack a column (partial records) or give None for a
    database-defaulted column that others set.
    """
    try:
        columns = {name: list(map(itemgetter(name), values)) for name in meta.names}
    except KeyError:
        return None
    count = len(values)
    for name in meta.defaulted_by_database:
        if name in columns:
            nones = sum(map(is_, columns[name], repeat(None)))
            if nones == count:
                del columns[name]
            elif nones:
                return None
    fills = [(meta.created_column, now), (meta.updated_column, now), (meta.lock_column, 0)]
    for name, fill in fills:
        if not name:
            continue
        column = columns.get(name)
        if column is None:
            columns[name] = [fill] * count
        elif any(map(is_, column, repeat(None))):
            columns[name] = [fill if v is None else v for v in column]
    return Group(tuple(columns), list(columns.values()), count)


def _positive(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise QueryError(f"{name} must be a positive integer, not {value!r}")
    return value


def insert_many(model: Any, rows: Iterable[Any], batch_size: int) -> int:
    """INSERT rows with executemany, ``batch_size`` rows per call; returns the count."""
    _positive("batch_size", batch_size)
    groups = rows_for_write(model, rows)
    if not groups:
        return 0
    insert = model.__ar_meta__.bulk_insert_stmt
    with atomic(routing.resolve(model)) as frame:
        for names, columns, count in groups:
            for start in range(0, count, batch_size):
                stop = min(start + batch_size, count)
                fastpath.insert_many(frame.sa_conn, insert, names,
                                      [column[start:stop] for column in columns], stop - start)
    return sum(group.size for group in groups)


def upsert_one(model: Any, row: Any, conflict_keys: Sequence[str],
               update_columns: Sequence[str] | None) -> int:
    """One row's INSERT ... ON CONFLICT / ON DUPLICATE KEY, one ``execute``; returns 1.

    What ``upsert_many`` does for a batch of one, without its column-wise
    grouping and ``executemany``: a single row is the common upsert, so its
    statement is looked up by the columns the row writes, and the checks of
    the arguments run when a new combination first comes.
    """
    meta = model.__ar_meta__
    stamps = meta.created_column or meta.updated_column
    written = _written(meta, _field_values(model, [row])[0], utc_now() if stamps else None)
    meta.fit(written)
    conn = routing.resolve(model)
    names = tuple(written)
    key = (meta.table, conn.dialect, names, tuple(conflict_keys),
           None if update_columns is None else tuple(update_columns))
    stmt = _one_row.get(key)
    if stmt is None:
        _check_conflict_keys(meta, conflict_keys, update_columns)
        _require_conflict_keys(conflict_keys, names)
        stmt, _ = _upsert_statement(meta, conn.dialect, names, conflict_keys,
                                    _updated(meta, names, conflict_keys, update_columns), None)
        if len(_one_row) >= _UPSERT_LIMIT:
            _one_row.clear()
        _one_row[key] = stmt
    frame = current_frame(conn.name)
    if frame is None or conn.read_only:
        with atomic(conn) as frame:
            fastpath.write(frame.sa_conn, stmt, written, names)
    else:
        frame.wrote = True
        fastpath.write(frame.sa_conn, stmt, written, names)
    return 1


def _check_conflict_keys(meta: Any, conflict_keys: Sequence[str],
                         update_columns: Sequence[str] | None) -> None:
    if isinstance(conflict_keys, str) or not conflict_keys:
        raise QueryError("conflict_keys must be a non-empty list of column names")
    for name in (*conflict_keys, *(update_columns or ())):
        meta.column(name)


def _require_conflict_keys(conflict_keys: Sequence[str], names: Sequence[str]) -> None:
    missing = [k for k in conflict_keys if k not in names]
    if missing:
        raise QueryError(f"every row needs the conflict keys; a row lacks {missing}")


def _updated(meta: Any, names: tuple[str, ...], conflict_keys: Sequence[str],
             update_columns: Sequence[str] | None) -> tuple[str, ...]:
    """The columns a conflict updates: never the key, the creation time or the lock version."""
    keep = {*conflict_keys, *meta.pk_names, meta.created_column, meta.lock_column}
    return tuple(k for k in (names if update_columns is None else update_columns)
                 if k not in keep)


def upsert_many(model: Any, rows: Iterable[Any], conflict_keys: Sequence[str], batch_size: int,
                update_columns: Sequence[str] | None) -> int:
    """One INSERT ... ON CONFLICT / ON DUPLICATE KEY statement per batch; returns the count.

    The statement binds its values and is compiled once per shape (a statement
    with the values in it is compiled anew for every batch, which costs more
    than the database's work): one row sent with ``executemany`` (one
    statement per batch for the driver), or, where the driver's executemany is
    a round trip per row (psycopg2), every row of the batch.
    """
    meta = model.__ar_meta__
    _check_conflict_keys(meta, conflict_keys, update_columns)
    _positive("batch_size", batch_size)
    groups = rows_for_write(model, rows)
    if not groups:
        return 0
    for group in groups:
        _require_conflict_keys(conflict_keys, group.names)
    conn = routing.resolve(model)
    dialect = conn.dialect
    multi_row = dialect.use_insertmanyvalues_wo_returning
    with atomic(conn) as frame:
        for names, columns, size in groups:
            update = _updated(meta, names, conflict_keys, update_columns)
            if not multi_row:
                stmt, _ = _upsert_statement(meta, dialect, names, conflict_keys, update, None)
                for start in range(0, size, batch_size):
                    chunk = [column[start:start + batch_size] for column in columns]
                    fastpath.insert_many(frame.sa_conn, stmt, names, chunk,
                                          min(batch_size, size - start))
                continue
            per_statement = min(batch_size, max(1, dialects.max_bind_params(dialect) // len(names)))
            # the same rows' SQL made from the one-row statement where the fast path can
            # (psycopg2): a statement per row count compiles in tens of milliseconds
            one_row, _ = _upsert_statement(meta, dialect, names, conflict_keys, update, None)
            for start in range(0, size, per_statement):
                count = min(per_statement, size - start)
                if fastpath.insert_rows(frame.sa_conn, one_row, names, columns, start, count):
                    continue
                stmt, keys = _upsert_statement(meta, dialect, names, conflict_keys, update, count)
                values = chain.from_iterable(column[start:start + count] for column in columns)
                fastpath.write(frame.sa_conn, stmt, dict(zip(keys, values, strict=True)), keys)
    return sum(group.size for group in groups)


# upsert statements by (table, dialect, columns, conflict keys, update, rows)
_upserts: dict[tuple[Any, ...], tuple[Any, tuple[str, ...]]] = {}
# one-row upserts by (table, dialect, columns, conflict keys, update_columns as given)
_one_row: dict[tuple[Any, ...], Any] = {}
_UPSERT_LIMIT = 64


def _upsert_statement(meta: Any, dialect: Any, names: tuple[str, ...],
                      conflict_keys: Sequence[str], update: tuple[str, ...],
                      rows: int | None) -> tuple[Any, tuple[str, ...]]:
    """The upsert of one row bound by column names (``rows=None``), or of ``rows`` rows.

    With ``rows``, the parameter of column j in row i is ``_ar_v<j>_<i>``; the
    names come back column by column.
    """
    key = (meta.table, dialect, names, tuple(conflict_keys), update, rows)
    found = _upserts.get(key)
    if found is not None:
        return found
    columns = meta.table.c
    if rows is None:
        params = [[name] for name in names]
    else:
        params = [[f"_ar_v{j}_{i}" for i in range(rows)] for j in range(len(names))]
    values = [{name: sa.bindparam(params[j][i], type_=columns[name].type)
               for j, name in enumerate(names)} for i in range(rows or 1)]
    stmt = dialects.upsert(dialect, meta.table, values, conflict_keys, list(update),
                           increment=meta.lock_column)
    if len(_upserts) >= _UPSERT_LIMIT:
        _upserts.clear()
    found = _upserts[key] = (stmt, tuple(chain.from_iterable(params)))
    return found
