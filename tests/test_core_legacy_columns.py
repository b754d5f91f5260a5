"""Field(column='email_address'): the column's name in SQL, the field's in Python."""

from __future__ import annotations

from typing import ClassVar

import pytest
import sqlalchemy as sa

from rhosocial_ar import ActiveRecord, BelongsTo, Field, HasMany, IntegerPKMixin, TimestampMixin
from tests.conftest import make_tables
from tests.test_records import count_statements


class LegacyUser(IntegerPKMixin, TimestampMixin, ActiveRecord):
    __table_name__ = "core_old_users"
    id: int | None = Field(default=None, column="user_id")
    email: str = Field(column="email_address", max_length=80, unique=True)
    name: str = Field(default="", column="full_name", max_length=40)
    posts: ClassVar[HasMany[LegacyPost]] = HasMany(foreign_key="author", inverse_of="owner")


class LegacyPost(IntegerPKMixin, ActiveRecord):
    __table_name__ = "core_old_posts"
    id: int | None = Field(default=None, column="post_id")
    author: int = Field(column="author_user_id")
    title: str = Field(column="post_title", max_length=40)
    owner: ClassVar[BelongsTo[LegacyUser]] = BelongsTo(foreign_key="author", inverse_of="posts")


@pytest.fixture
def legacy(db):
    make_tables(LegacyUser, LegacyPost)
    return db


def columns(table_name):
    from rhosocial_ar import get_connection

    return {c["name"] for c in sa.inspect(get_connection().engine).get_columns(table_name)}


def test_the_table_has_the_column_names(legacy):
    assert columns("core_old_users") == {"user_id", "email_address", "full_name", "created_at",
                                         "updated_at"}
    assert LegacyUser.c.email.name == "email_address" and LegacyUser.primary_key() == "id"
    sql = LegacyUser.where(email="a").order_by("-name").to_sql()
    assert "core_old_users.email_address =" in sql and "ORDER BY core_old_users.full_name DESC" in sql


def test_records_and_queries_use_the_field_names(legacy):
    seen = count_statements()
    ann = LegacyUser.create(email="ann@x.io", name="ann")
    assert "email_address" in seen[-1]
    assert ann.id == 1 and LegacyUser.find(1).email == "ann@x.io"
    ann.name = "Ann"
    assert ann.save() == 1 and LegacyUser.find_by(email="ann@x.io").name == "Ann"
    LegacyUser.bulk_insert([{"email": "bob@x.io", "name": "bob"}, {"email": "cyd@x.io"}])
    assert LegacyUser.where(email=["bob@x.io", "cyd@x.io"]).order_by("-email").pluck(
        "email", "name") == [("cyd@x.io", ""), ("bob@x.io", "bob")]
    assert LegacyUser.where(LegacyUser.c.name == "bob").update(name="Bob") == 1
    assert LegacyUser.where("full_name = ?", "Bob").count() == 1     # SQL says the column
    assert LegacyUser.find(2).refresh().to_dict()["name"] == "Bob"
    assert LegacyUser.count("email", distinct=True) == 3
    assert LegacyUser.where(email="cyd@x.io").delete() == 1


def test_upserts_raw_sql_and_statements(legacy):
    LegacyUser.insert_or_update({"email": "ann@x.io", "name": "a"}, conflict_keys=["email"])
    LegacyUser.insert_or_update({"email": "ann@x.io", "name": "b"}, conflict_keys=["email"])
    LegacyUser.bulk_insert_or_update([{"email": "ann@x.io", "name": "c"},
                                      {"email": "bob@x.io", "name": "d"}], conflict_keys=["email"])
    assert LegacyUser.order_by("id").pluck("email", "name") == [("ann@x.io", "c"),
                                                                ("bob@x.io", "d")]
    found = LegacyUser.raw_query("SELECT * FROM core_old_users WHERE email_address = ?", ["bob@x.io"])
    assert (found[0].email, found[0].name) == ("bob@x.io", "d") and found[0].id is not None
    cte = LegacyUser.where(name="d").cte()
    assert [u.email for u in LegacyUser.from_statement(sa.select(cte))] == ["bob@x.io"]
    users = LegacyUser.order_by("id").all()
    for user in users:
        user.name = user.name.upper()
    assert LegacyUser.bulk_update(users, ["name"]) == 2
    assert LegacyUser.order_by("id").pluck("name") == ["C", "D"]


def test_relations_joins_and_grouping(legacy):
    ann = LegacyUser.create(email="ann@x.io")
    bob = LegacyUser.create(email="bob@x.io")
    LegacyPost.bulk_insert([{"author": ann.id, "title": t} for t in ("p1", "p2")])
    assert [p.title for p in ann.posts()] == ["p1", "p2"] and ann.posts()[0].owner() is ann
    users = LegacyUser.order_by("id").with_(("posts", lambda q: q.order_by("-title"))).all()
    assert [[p.title for p in u.posts()] for u in users] == [["p2", "p1"], []]
    assert LegacyUser.join("posts").where(LegacyPost.c.title == "p2").pluck("email") == ["ann@x.io"]
    rows = (LegacyUser.left_join("posts").select("email", n=sa.func.count(LegacyPost.c.id))
            .group_by("email").order_by("email").rows())
    assert rows == [{"email": "ann@x.io", "n": 2}, {"email": bob.email, "n": 0}]
