"""Saving and deleting loaded records in bulk: one statement per batch, one transaction per call.

    users = User.where(status='trial').all()
    for u in users:
        u.status = 'active'
    User.bulk_update(users, ['status'])      # UPDATE users SET status = CASE id WHEN ... END
    User.bulk_delete(users)                  # DELETE FROM users WHERE id IN (...)

The lock version and ``updated_at`` are honoured as ``save()`` honours them;
hooks other than ``after_commit``/``after_rollback`` do not run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from . import dialects, fastpath
from .errors import CrossConnectionError, QueryError, StaleObjectError
from .mixins import utc_now
from .transaction import atomic

__all__ = ["bulk_delete", "bulk_update"]

_CACHE_LIMIT = 256
# (table, dialect name, kind, fields, rows, flags) -> statement; bounded
_statements: dict[tuple[Any, ...], Any] = {}
_set = object.__setattr__


def bulk_update(model: Any, records: Iterable[Any], fields: Sequence[str],
                batch_size: int = 1000) -> int:
    """Write ``fields`` of every record, one UPDATE per batch; returns the rows updated."""
    meta = model.__ar_meta__
    if isinstance(fields, str) or not fields:
        raise QueryError("bulk_update() needs a list of field names: bulk_update(records, ['status'])")
    fields = tuple(dict.fromkeys(fields))
    for name in fields:
        meta.column(name)
        if name in meta.pk_names or name == meta.lock_column:
            raise QueryError(f"bulk_update() cannot write {name!r}: the primary key and the lock "
                             f"version are the library's to keep")
    found = _records(model, records, "bulk_update", batch_size)
    for record in found:
        missing = [n for n in fields if n not in record.__dict__]
        if missing:
            raise QueryError(f"bulk_update(): a {model.__name__} loaded without "
                             f"{', '.join(missing)} cannot write it")
        meta.fit({n: record.__dict__[n] for n in fields}, record.__dict__)   # before any SQL
    if not found:
        return 0
    stamp = meta.updated_column if meta.updated_column not in fields else None
    written = (*fields, *((stamp,) if stamp else ()))
    conn = found[0]._ar_connection()
    per_row = len(meta.pk_names) + len(fields) + (1 if meta.lock_column else 0)
    step = _step(conn.dialect, batch_size, per_row)
    total = 0
    with atomic(conn) as frame:
        now = utc_now()
        for start in range(0, len(found), step):
            batch = found[start:start + step]
            stmt = _update_stmt(meta, conn.dialect, fields, len(batch), stamp)
            params: dict[str, Any] = {"now": now} if stamp else {}
            for i, record in enumerate(batch):
                _key_params(meta, record, i, params)
                for name in fields:
                    params[f"{name}_{i}"] = record.__dict__[name]
            count = fastpath.write(frame.sa_conn, stmt, params)
            _check_count(model, meta, batch, count, "updated")
            total += count
            for record in batch:   # each record is the row now; a rollback puts back its state
                frame.enlist(record, record._ar_state())
                values = record._ar_own_values()
                if stamp:
                    values[stamp] = now
                if meta.lock_column:
                    values[meta.lock_column] = record._ar_saved[meta.lock_column] + 1
                changed = {n: values[n] for n in written}
                if meta.lock_column:
                    changed[meta.lock_column] = values[meta.lock_column]
                _set(record, "_ar_saved", {**record._ar_saved, **changed})
    return total


def bulk_delete(model: Any, records: Iterable[Any], batch_size: int = 1000) -> int:
    """Delete every record (soft-delete models mark them), one statement per batch."""
    meta = model.__ar_meta__
    found = _records(model, records, "bulk_delete", batch_size)
    if not found:
        return 0
    conn = found[0]._ar_connection()
    soft = meta.soft_delete_column
    step = _step(conn.dialect, batch_size, len(meta.pk_names) + (1 if meta.lock_column else 0))
    total = 0
    with atomic(conn) as frame:
        now = utc_now()
        for start in range(0, len(found), step):
            batch = found[start:start + step]
            stmt = _delete_stmt(meta, conn.dialect, len(batch))
            params: dict[str, Any] = {"now": now} if soft else {}
            for i, record in enumerate(batch):
                _key_params(meta, record, i, params)
            count = fastpath.write(frame.sa_conn, stmt, params)
            _check_count(model, meta, batch, count, "deleted")
            total += count
            for record in batch:
                frame.enlist(record, record._ar_state())
                if soft:   # as record.delete(): only deleted_at is written
                    record._ar_own_values()[soft] = now
                    _set(record, "_ar_saved", {**record._ar_saved, soft: now})
                else:
                    _set(record, "_ar_saved", None)
    return total


def _records(model: Any, records: Iterable[Any], action: str, batch_size: Any) -> list[Any]:
    """The records, checked: of this model, saved, each once, all writing to one connection."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise QueryError(f"{action}(): batch_size must be a positive integer, not {batch_size!r}")
    meta = model.__ar_meta__
    pks = meta.require_pk(action)
    found = list(records)
    seen: set[tuple[Any, ...]] = set()
    connection = None
    for record in found:
        if type(record) is not model:
            raise QueryError(f"{model.__name__}.{action}() takes {model.__name__} records, "
                             f"not {record!r}")
        saved = record._ar_saved
        if saved is None:
            raise QueryError(f"{action}(): a {model.__name__} that was never saved (save() it)")
        name = record._ar_connection().name
        if connection is not None and name != connection:
            raise CrossConnectionError(f"{action}(): the records come from {connection!r} and "
                                       f"{name!r}; one statement writes to one database")
        connection = name
        key = tuple(saved.get(n) for n in pks)
        if None in key:
            raise QueryError(f"{action}(): a {model.__name__} loaded without its primary key")
        if key in seen:
            raise QueryError(f"{action}(): the {model.__name__} with key {key} is given twice")
        seen.add(key)
    return found


def _step(dialect: Any, batch_size: int, per_row: int) -> int:
    """Rows per statement: the batch size, within the dialect's bound-parameter limit."""
    return max(1, min(batch_size, (dialects.max_bind_params(dialect) - 8) // per_row))


def _key_params(meta: Any, record: Any, i: int, params: dict[str, Any]) -> None:
    saved = record._ar_saved
    for j, name in enumerate(meta.pk_names):
        params[f"k{i}_{j}"] = saved[name]
    if meta.lock_column:
        params[f"v{i}"] = saved[meta.lock_column]


def _check_count(model: Any, meta: Any, batch: list[Any], count: int, what: str) -> None:
    if meta.lock_column and count != len(batch):
        raise StaleObjectError(
            f"{len(batch) - count} of {len(batch)} {model.__name__} records were changed or "
            f"deleted by someone else since they were loaded; nothing was {what}"
        )


def _match(meta: Any, rows: int) -> Any:
    """WHERE: the rows by key (and lock version), ``k<row>_<key>`` and ``v<row>`` parameters."""
    table = meta.table
    keys = [table.c[n] for n in meta.pk_names]
    if len(keys) == 1 and not meta.lock_column:
        return keys[0].in_([sa.bindparam(f"k{i}_0", type_=keys[0].type) for i in range(rows)])
    return sa.or_(*(_row(meta, keys, i) for i in range(rows)))


def _row(meta: Any, keys: list[Any], i: int) -> Any:
    conditions = [key == sa.bindparam(f"k{i}_{j}", type_=key.type) for j, key in enumerate(keys)]
    if meta.lock_column:
        version = meta.table.c[meta.lock_column]
        conditions.append(version == sa.bindparam(f"v{i}", type_=version.type))
    return sa.and_(*conditions)


def _cached(key: tuple[Any, ...], build: Any) -> Any:
    stmt = _statements.get(key)
    if stmt is None:
        if len(_statements) >= _CACHE_LIMIT:
            _statements.clear()
        stmt = _statements[key] = build()
    return stmt


def _update_stmt(meta: Any, dialect: Any, fields: tuple[str, ...], rows: int,
                 stamp: str | None) -> Any:
    def build() -> Any:
        table = meta.table
        keys = [table.c[n] for n in meta.pk_names]
        values: dict[str, Any] = {}
        for name in fields:
            column = table.c[name]
            values[name] = sa.case(
                *((sa.and_(*(key == sa.bindparam(f"k{i}_{j}", type_=key.type)
                             for j, key in enumerate(keys))),
                   dialects.typed_value(dialect, sa.bindparam(f"{name}_{i}", type_=column.type),
                                        column.type))
                  for i in range(rows)),
                else_=column)
        if stamp:
            values[stamp] = sa.bindparam("now", type_=table.c[stamp].type)
        if meta.lock_column:
            values[meta.lock_column] = table.c[meta.lock_column] + 1
        return table.update().where(_match(meta, rows)).values(values)

    return _cached((meta.table, dialect.name, "update", fields, rows, stamp), build)


def _delete_stmt(meta: Any, dialect: Any, rows: int) -> Any:
    def build() -> Any:
        table = meta.table
        soft = meta.soft_delete_column
        if soft:
            return table.update().where(_match(meta, rows)).values(
                {soft: sa.bindparam("now", type_=table.c[soft].type)})
        return table.delete().where(_match(meta, rows))

    return _cached((meta.table, dialect.name, "delete", rows, meta.soft_delete_column), build)
