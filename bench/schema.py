"""The benchmark's two tables, the same DDL for every implementation, and its data.

    ddl('sqlite')                  # CREATE TABLE statements for users and posts
    user_rows(3)                   # [{'name': 'user1', 'email': ..., 'age': ..., 'created_at': ...}, ...]
    post_rows(2, per_user=10)      # 20 posts, scattered over users 1 and 2

The tables are created by the harness with the raw driver (never by an
implementation), so every implementation works on identical tables; each
implementation maps its own models onto them. Data is deterministic, so the
harness can compute what every query must return.
"""

from __future__ import annotations

import datetime
from typing import Any

USER_COLUMNS = ("name", "email", "age", "created_at")
POST_COLUMNS = ("user_id", "title", "body")
# W12 upserts on email: its unique index is made for that workload alone, so the
# other workloads' inserts do not maintain it
UPSERT_KEY = "email"
UPSERT_SET = tuple(c for c in USER_COLUMNS if c != UPSERT_KEY)
UPSERT_INDEX = f"CREATE UNIQUE INDEX ux_users_{UPSERT_KEY} ON users ({UPSERT_KEY})"

_DDL = {
    "sqlite": [
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name VARCHAR(100) NOT NULL, "
        "email VARCHAR(255) NOT NULL, age INTEGER NOT NULL, created_at TIMESTAMP NOT NULL)",
        "CREATE TABLE posts (id INTEGER PRIMARY KEY, "
        "user_id INTEGER NOT NULL REFERENCES users (id), title VARCHAR(200) NOT NULL, "
        "body TEXT NOT NULL)",
        "CREATE INDEX ix_posts_user_id ON posts (user_id)",
    ],
    "postgresql": [
        "CREATE TABLE users (id SERIAL PRIMARY KEY, name VARCHAR(100) NOT NULL, "
        "email VARCHAR(255) NOT NULL, age INTEGER NOT NULL, created_at TIMESTAMP NOT NULL)",
        "CREATE TABLE posts (id SERIAL PRIMARY KEY, "
        "user_id INTEGER NOT NULL REFERENCES users (id), title VARCHAR(200) NOT NULL, "
        "body TEXT NOT NULL)",
        "CREATE INDEX ix_posts_user_id ON posts (user_id)",
    ],
    "mysql": [
        "CREATE TABLE users (id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY, "
        "name VARCHAR(100) NOT NULL, email VARCHAR(255) NOT NULL, age INTEGER NOT NULL, "
        "created_at DATETIME(6) NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        "CREATE TABLE posts (id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY, "
        "user_id INTEGER NOT NULL, title VARCHAR(200) NOT NULL, body TEXT NOT NULL, "
        "INDEX ix_posts_user_id (user_id), FOREIGN KEY (user_id) REFERENCES users (id)) "
        "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    ],
}

_DROP = {
    "sqlite": ["DROP TABLE IF EXISTS posts", "DROP TABLE IF EXISTS users"],
    "postgresql": ["DROP TABLE IF EXISTS posts, users CASCADE"],
    "mysql": ["DROP TABLE IF EXISTS posts", "DROP TABLE IF EXISTS users"],
}

_EPOCH = datetime.datetime(2024, 1, 1, 8, 0, 0)
_BODY = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
         "incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud. ")


def ddl(dialect: str) -> list[str]:
    """DROP and CREATE statements that give empty tables on ``dialect``."""
    return [*_DROP[dialect], *_DDL[dialect]]


def user_age(i: int) -> int:
    """The age of user number ``i`` (1-based): spread over 18..79."""
    return 18 + (i * 7919) % 62


def user_row(i: int, prefix: str = "user") -> dict[str, Any]:
    """The values of user number ``i`` (1-based), created_at with microseconds."""
    return {
        "name": f"{prefix}{i}",
        "email": f"{prefix}{i}@example.com",
        "age": user_age(i),
        "created_at": _EPOCH + datetime.timedelta(seconds=i * 37, microseconds=(i * 7919) % 999_983),
    }


def user_rows(count: int, prefix: str = "user") -> list[dict[str, Any]]:
    return [user_row(i, prefix) for i in range(1, count + 1)]


def post_rows(users: int, per_user: int) -> list[dict[str, Any]]:
    """``users * per_user`` posts; consecutive posts belong to different users."""
    return [
        {"user_id": j % users + 1, "title": f"post {j}", "body": f"{j} {_BODY}"}
        for j in range(users * per_user)
    ]
