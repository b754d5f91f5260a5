"""The raw DB-API driver: sqlite3, psycopg2 or PyMySQL, by hand. The floor.

    impl = Impl(target); impl.setup()
    impl.w4_find([3, 1])      # [(3, 'user3', ...), (1, 'user1', ...)]: tuples

Rows are the driver's tuples. What a careful raw user writes: one
connection, SQL strings, ``lastrowid`` (``RETURNING id`` on PostgreSQL),
``executemany`` for the bulk insert (``psycopg2.extras.execute_values`` on
PostgreSQL, whose ``executemany`` is one round trip per row), two queries
with ``IN`` for W7. On SQLite ``created_at`` comes back as a ``datetime``
like everywhere else: the connection declares types
(``PARSE_DECLTYPES``) and ``TIMESTAMP`` is converted with
``datetime.fromisoformat``.
"""

from __future__ import annotations

import datetime
import sqlite3
from collections import defaultdict
from typing import Any

from . import base

sqlite3.register_adapter(datetime.datetime, lambda value: value.isoformat(" "))
sqlite3.register_converter("TIMESTAMP", lambda raw: datetime.datetime.fromisoformat(raw.decode()))

USER_INDEX = {"id": 0, "name": 1, "email": 2, "age": 3, "created_at": 4}
POST_INDEX = {"id": 0, "user_id": 1, "title": 2, "body": 3}
SELECT_USERS = "SELECT id, name, email, age, created_at FROM users"


class Impl(base.Impl):
    name = "raw"

    def setup(self) -> None:
        self.conn = self.target.raw_connect()
        self.sqlite = self.target.dialect == "sqlite"
        p = self.target.placeholder
        self.p = p
        self.insert_sql = f"INSERT INTO users (name, email, age, created_at) VALUES ({p}, {p}, {p}, {p})"
        if self.target.dialect == "postgresql":
            self.insert_sql += " RETURNING id"
        self.find_sql = f"{SELECT_USERS} WHERE id = {p}"
        self.page_sql = f"{SELECT_USERS} WHERE age > {p} ORDER BY id LIMIT 20"
        self.update_sql = f"UPDATE users SET age = {p} WHERE id = {p}"
        cur = self.conn.cursor()
        cur.execute("SELECT COUNT(*) FROM users")
        cur.fetchall()
        self.conn.commit()

    def teardown(self) -> None:
        self.conn.close()

    def prepare(self, key: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
        if key in ("W1", "W2"):
            return ([(r["name"], r["email"], r["age"], r["created_at"]) for r in args[0]],)
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
            cur.execute("SELECT id, user_id, title, body FROM posts WHERE user_id IN ("
                        + ", ".join("?" * len(ids)) + ")", ids)
        else:
            cur.execute("SELECT id, user_id, title, body FROM posts WHERE user_id IN %s",
                        (tuple(ids),))
        posts: dict[int, list[Any]] = defaultdict(list)
        for post in cur.fetchall():
            posts[post[1]].append(post)
        self.conn.commit()
        self._posts = posts
        touched = sum(len(posts.get(u[0], ())) for u in users)
        return users, touched
