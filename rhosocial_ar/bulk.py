"""Writing many rows at once: bulk inserts and single-statement upserts.

    User.bulk_insert([{'username': 'ann'}, {'username': 'bob'}])
    Stat.bulk_insert_or_update(rows, conflict_keys=['user_id'], batch_size=1000)

Rows are validated by the model before anything is sent; hooks do not run.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from . import dialects, execution, routing
from .errors import QueryError
from .mixins import utc_now
from .transaction import atomic

__all__ = ["insert_many", "upsert_many"]



def rows_for_write(model: Any, rows: Iterable[Any]) -> list[dict[str, Any]]:
    """Validate rows (dicts or records) and return their column values."""
    meta = model.__ar_meta__
    out = []
    now = utc_now()
    for row in rows:
        record = row if isinstance(row, model) else model.model_validate(row)
        values = {n: record.__dict__[n] for n in meta.names if n in record.__dict__}
        for name in meta.defaulted_by_database:
            if values.get(name) is None:
                values.pop(name, None)
        for stamp in (meta.created_column, meta.updated_column):
            if stamp and values.get(stamp) is None:
                values[stamp] = now
        if meta.lock_column and values.get(meta.lock_column) is None:
            values[meta.lock_column] = 0
        out.append(values)
    return out


def _positive(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise QueryError(f"{name} must be a positive integer, not {value!r}")
    return value


def _groups(rows: list[dict[str, Any]]) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    """Rows with the same columns go in the same statements."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    return groups


def _chunks(rows: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def insert_many(model: Any, rows: Iterable[Any], batch_size: int) -> int:
    """INSERT rows with executemany, ``batch_size`` rows per call; returns the count."""
    _positive("batch_size", batch_size)
    values = rows_for_write(model, rows)
    if not values:
        return 0
    insert = model.__ar_meta__.insert_stmt
    with atomic(routing.resolve(model)) as frame:
        for group in _groups(values).values():
            for chunk in _chunks(group, batch_size):
                execution.insert_many(frame.sa_conn, insert, chunk)
    return len(values)


def upsert_many(model: Any, rows: Iterable[Any], conflict_keys: Sequence[str], batch_size: int,
                update_columns: Sequence[str] | None) -> int:
    """One INSERT ... ON CONFLICT / ON DUPLICATE KEY statement per batch; returns the count."""
    meta = model.__ar_meta__
    if isinstance(conflict_keys, str) or not conflict_keys:
        raise QueryError("conflict_keys must be a non-empty list of column names")
    for name in (*conflict_keys, *(update_columns or ())):
        meta.column(name)
    _positive("batch_size", batch_size)
    values = rows_for_write(model, rows)
    if not values:
        return 0
    groups = _groups(values)
    for keys in groups:
        missing = [k for k in conflict_keys if k not in keys]
        if missing:
            raise QueryError(f"every row needs the conflict keys; a row lacks {missing}")
    conn = routing.resolve(model)
    # never overwrite the key, the creation time or the lock version with the new row's
    keep = {*conflict_keys, *meta.pk_names, meta.created_column, meta.lock_column}
    with atomic(conn) as frame:
        for keys, group in groups.items():
            update = [k for k in (keys if update_columns is None else update_columns)
                      if k not in keep]
            per_batch = min(batch_size, max(1, dialects.max_bind_params(conn.dialect) // len(keys)))
            for chunk in _chunks(group, per_batch):
                stmt = dialects.upsert(conn.dialect, meta.table, chunk, conflict_keys, update,
                                       increment=meta.lock_column)
                frame.sa_conn.execute(stmt)
    return len(values)
