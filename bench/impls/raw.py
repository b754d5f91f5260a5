"""The raw DB-API driver: sqlite3, psycopg2 or PyMySQL, by hand. The floor.

    impl = Impl(target); impl.setup()
    impl.w4_find([3, 1])      # [(3, 'user3', ...), (1, 'user1', ...)]: tuples

Rows are the driver's tuples. What a careful raw user writes: one
connection, SQL strings, ``lastrowid`` (``RETURNING id`` on PostgreSQL),
``executemany`` for the bulk insert (``psycopg2.extras.execute_values`` on
PostgreSQL, whose ``executemany`` is one round trip per row), two queries
with ``IN`` for W7, ``INSERT ... ON CONFLICT`` (``ON DUPLICATE KEY UPDATE``
on MariaDB) for W12, ``dict(zip(columns, row))`` for W13, a query per
user for W14. On SQLite ``created_at`` comes back as a ``datetime``
like everywhere else: the connection declares types
(``PARSE_DECLTYPES``) and ``TIMESTAMP`` is converted with
``datetime.fromisoformat``.
"""

from __future__ import annotations

import datetime
import sqlite3
from collections import defaultdict
from typing import Any

from ..schema import UPSERT_KEY, UPSERT_SET, USER_COLUMNS
from . import base

sqlite3.register_adapter(datetime.datetime, lambda value: value.isoformat(" "))
sqlite3.register_converter("TIMESTAMP", lambda raw: datetime.datetime.fromisoformat(raw.decode()))

USER_INDEX = {"id": 0, "name": 1, "email": 2, "age": 3, "created_at": 4}
POST_INDEX = {"id": 0, "user_id": 1, "title": 2, "body": 3}
SELECT_USERS = "SELECT id, name, email, age, created_at FROM users"
SELECT_POSTS = "SELECT id, user_id, title, body FROM posts"


class Impl(base.Impl):
    name = "raw"

    def setup(self) -> None:
        self.conn = self.target.raw_connect()
        self.sqlite = self.target.dialect == "sqlite"
        p = self.target.placeholder
        self.p = p
        insert = f"INSERT INTO users ({', '.join(USER_COLUMNS)}) VALUES ({p}, {p}, {p}, {p})"
        self.insert_sql = insert
        if self.target.dialect == "postgresql":
            self.insert_sql += " RETURNING id"
        if self.target.dialect == "mysql":
            sets = ", ".join(f"{c} = VALUES({c})" for c in UPSERT_SET)
            self.upsert_sql = f"{insert} ON DUPLICATE KEY UPDATE {sets}"
        else:
            sets = ", ".join(f"{c} = excluded.{c}" for c in UPSERT_SET)
            self.upsert_sql = f"{insert} ON CONFLICT ({UPSERT_KEY}) DO UPDATE SET {sets}"
        self.find_sql = f"{SELECT_USERS} WHERE id = {p}"
        self.page_sql = f"{SELECT_USERS} WHERE age > {p} ORDER BY id LIMIT 20"
        self.update_sql = f"UPDATE users SET age = {p} WHERE id = {p}"
        self.count_sql = f"SELECT COUNT(*) FROM users WHERE age = {p}"
        self.sum_sql = f"SELECT SUM(age) FROM users WHERE age > {p}"
        self.grouped_sql = f"SELECT age, COUNT(*) FROM users WHERE age > {p} GROUP BY age"
        self.range_sql = f"UPDATE users SET age = age + 1 WHERE id BETWEEN {p} AND {p}"
        self.posts_sql = f"{SELECT_POSTS} WHERE user_id = {p}"
        cur = self.conn.cursor()
        cur.execute("SELECT COUNT(*) FROM users")
        cur.fetchall()
        self.conn.commit()

    def teardown(self) -> None:
        self.conn.close()

    def prepare(self, key: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
        if key in ("W1", "W2", "W12"):
            return ([tuple(r[c] for c in USER_COLUMNS) for r in args[0]],)
        if key in ("W9", "W10", "W15"):    # each threshold as the parameter tuple it is sent as
            return ([(t,) for t in args[0]],)
        return args

    def value(self, obj: Any, name: str) -> Any:
        return obj[(USER_INDEX if len(obj) == 5 else POST_INDEX)[name]]

    def posts_of(self, user: Any) -> list[Any]:
        return self._posts.get(user[0], [])

    def _begin(self) -> Any:
        cur = self.conn.cursor()
        if self.sqlite:
            cur.execute("BEGIN")
        return cur

    def w1_create(self, rows: list[tuple[Any, ...]]) -> list[int]:
        cur = self._begin()
        ids = []
        sql = self.insert_sql
        if self.target.dialect == "postgresql":
            for row in rows:
                cur.execute(sql, row)
                ids.append(cur.fetchone()[0])
        else:
            for row in rows:
                cur.execute(sql, row)
                ids.append(cur.lastrowid)
        self.conn.commit()
        return ids

    def w2_bulk_insert(self, rows: list[tuple[Any, ...]]) -> int:
        cur = self._begin()
        if self.target.dialect == "postgresql":
            from psycopg2.extras import execute_values

            execute_values(cur, "INSERT INTO users (name, email, age, created_at) VALUES %s",
                           rows, page_size=1000)
        else:
            cur.executemany(self.insert_sql, rows)
        self.conn.commit()
        return len(rows)

    def w3_load_all(self) -> list[Any]:
        cur = self._begin()
        cur.execute(SELECT_USERS)
        rows = cur.fetchall()
        self.conn.commit()
        return rows

    def w4_find(self, ids: list[int]) -> list[Any]:
        cur = self._begin()
        sql = self.find_sql
        found = []
        for i in ids:
            cur.execute(sql, (i,))
            found.append(cur.fetchone())
        self.conn.commit()
        return found

    def w5_query(self, thresholds: list[int]) -> list[list[Any]]:
        cur = self._begin()
        sql = self.page_sql
        pages = []
        for t in thresholds:
            cur.execute(sql, (t,))
            pages.append(cur.fetchall())
        self.conn.commit()
        return pages

    def w6_update(self) -> int:
        cur = self._begin()
        cur.execute(SELECT_USERS)
        users = cur.fetchall()
        sql = self.update_sql
        for user in users:
            cur.execute(sql, (user[3] + 100, user[0]))
        self.conn.commit()
        return len(users)

    def w7_eager(self) -> tuple[list[Any], int]:
        cur = self._begin()
        cur.execute(SELECT_USERS)
        users = cur.fetchall()
        ids = [u[0] for u in users]
        if self.sqlite:
            cur.execute(f"{SELECT_POSTS} WHERE user_id IN (" + ", ".join("?" * len(ids)) + ")",
                        ids)
        else:
            cur.execute(f"{SELECT_POSTS} WHERE user_id IN %s", (tuple(ids),))
        posts: dict[int, list[Any]] = defaultdict(list)
        for post in cur.fetchall():
            posts[post[1]].append(post)
        self.conn.commit()
        self._posts = posts
        touched = sum(len(posts.get(u[0], ())) for u in users)
        return users, touched

    def _each(self, sql: str, params: list[Any], answer: Any) -> list[Any]:
        """``answer(cur)`` after ``sql`` with each of ``params``, in one transaction."""
        cur = self._begin()
        found = []
        for value in params:
            cur.execute(sql, value)
            found.append(answer(cur))
        self.conn.commit()
        return found

    def w9_count(self, thresholds: list[tuple[int]]) -> list[Any]:
        return self._each(self.count_sql, thresholds, _scalar)

    def w10_sum(self, thresholds: list[tuple[int]]) -> list[Any]:
        return self._each(self.sum_sql, thresholds, _scalar)

    def w11_update_range(self, ranges: list[tuple[int, int]]) -> int:
        return sum(self._each(self.range_sql, ranges, _rowcount))

    def w15_grouped_count(self, thresholds: list[tuple[int]]) -> list[dict[int, int]]:
        return self._each(self.grouped_sql, thresholds, _pairs)

    def w12_upsert(self, rows: list[tuple[Any, ...]]) -> int:
        return len(self._each(self.upsert_sql, rows, _nothing))

    def w13_to_dict(self) -> list[dict[str, Any]]:
        cur = self._begin()
        cur.execute(SELECT_USERS)
        names = [d[0] for d in cur.description]
        found = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        self.conn.commit()
        return found

    def w14_lazy(self) -> tuple[list[Any], list[list[Any]]]:
        cur = self._begin()
        cur.execute(SELECT_USERS)
        users = cur.fetchall()
        sql = self.posts_sql
        pages = []
        for user in users:
            cur.execute(sql, (user[0],))
            pages.append(cur.fetchall())
        self.conn.commit()
        return users, pages


def _scalar(cur: Any) -> Any:
    return cur.fetchone()[0]


def _pairs(cur: Any) -> dict[Any, Any]:
    return dict(cur.fetchall())


def _rowcount(cur: Any) -> int:
    return cur.rowcount


def _nothing(cur: Any) -> None:
    return None
