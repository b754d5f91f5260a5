"""The fence: every use of what SQLAlchemy, the drivers and pydantic do not promise.

    rows = fastpath.fetch_all(sa_conn, stmt, params)
    records = fastpath.fetch_records(sa_conn, origin, stmt, params, User, names)
    key = fastpath.insert(sa_conn, stmt, values, keys, pk_names)
    count = fastpath.write(sa_conn, stmt, params)
    fastpath.insert_many(sa_conn, stmt, names, columns, count)
    shape = fastpath.shape_of(User.c.age > 30)     # (key, values) of a condition, or None
    dicts = fastpath.as_dicts(("age", "n"))(rows)  # each row a dict by those names

The rest of the library runs its statements through these functions and
never touches a private name of another package. Inside, a statement may
skip ``Connection.execute`` and run on the DB-API cursor with SQLAlchemy's
own compiled SQL, processors and error handling (``execution.py``), when
nobody would notice (``guard.py``) and every internal is there
(``internals.py`` lists them, probes them once, and turns the fast path
off with one warning when one is missing). ``fast_path: False`` in a
connection's config turns it off for that engine.

Adding a statement kind: build the statement once per shape (cached by the
caller), pass it with a params dict to one of the functions above; they
compile it per dialect and parameter names, once.
"""

from .dicts import as_dicts
from .drivers import CONNECT_TIMEOUT, bound_pymysql_handshake, pool_text
from .execution import fetch, fetch_all, fetch_records, insert, insert_many, insert_rows, write
from .guard import switch_off
from .loading import STATE_SLOTS, loader, shares_snapshot
from .shapes import shape_of

__all__ = [
    "CONNECT_TIMEOUT", "STATE_SLOTS", "as_dicts", "bound_pymysql_handshake", "fetch", "fetch_all",
    "fetch_records", "insert", "insert_many", "insert_rows", "loader", "pool_text", "shape_of",
    "shares_snapshot", "switch_off", "write",
]
