"""Field types users expect (docs/models.md): each round-trips on every backend.

EmailStr and pydantic URLs are strings; nested models, dicts, lists, tuples
and sets one JSON document (JSONB on PostgreSQL); enums and UUIDs native
where the backend has them. Records come back equal to what was written,
with the field's own types, through the fast path and without it.
"""

from __future__ import annotations

import datetime
import enum
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import AnyUrl, BaseModel, EmailStr, HttpUrl, TypeAdapter

from rhosocial_ar import ActiveRecord, ConnectionManager, ValueNotStorable, get_connection
from rhosocial_ar.values import JSONValue, TextValue
from tests.conftest import Backend


class Address(BaseModel):
    street: str
    city: str
    since: datetime.date | None = None


class Plan(enum.Enum):
    FREE = "free"
    PRO = "pro"


class Member(ActiveRecord):
    __table_name__ = "typed_members"
    id: int | None = None
    email: EmailStr
    site: HttpUrl
    home: AnyUrl | None = None
    address: Address
    previous: list[Address] = []
    moved: Address | None = None
    settings: dict[str, Any] = {}
    scores: dict[str, int] = {}
    pair: tuple[int, str] = (0, "")
    labels: set[str] = set()
    plan: Plan = Plan.FREE
    token: uuid.UUID


def ann(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "email": "ann@example.com", "site": "https://example.com/ann?tab=1",
        "home": "ftp://files.example.com/ann",
        "address": Address(street="1 Main St", city="Lyon", since=datetime.date(2020, 1, 2)),
        "previous": [Address(street="2 Old Rd", city="Paris")],
        "settings": {"theme": "dark", "sizes": [1, 2.5], "nested": {"on": True, "off": None}},
        "scores": {"math": 3}, "pair": (7, "seven"), "labels": {"b", "a"},
        "plan": Plan.PRO, "token": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    }
    values.update(changes)
    return values


@pytest.fixture(params=[True, False], ids=["fast_path", "sqlalchemy"])
def tdb(request: pytest.FixtureRequest, db: Backend) -> Iterator[Backend]:
    """``default`` on the backend, with the fast path on or off; the table made fresh."""
    ConnectionManager.configure("default", {"url": db.urls[0], "fast_path": request.param})
    Member.drop_table()
    Member.create_table()
    yield db


def url(text: str) -> HttpUrl:
    """An HttpUrl on every supported pydantic (2.4 cannot call the Annotated alias)."""
    return TypeAdapter(HttpUrl).validate_python(text)


def assert_same(found: Member, expected: Member) -> None:
    assert found == expected
    assert isinstance(found.address, Address) and isinstance(found.previous[0], Address)
    # pydantic < 2.10 spells HttpUrl as an Annotated alias: no isinstance() with it
    assert type(found.site) is type(expected.site) and isinstance(found.pair, tuple)
    assert isinstance(found.labels, set) and found.plan is Plan.PRO
    assert found.address.since == datetime.date(2020, 1, 2)


def test_column_types_per_backend(tdb: Backend) -> None:
    c = Member.c
    assert isinstance(c.email.type, sa.String) and c.email.type.length == 254
    assert isinstance(c.site.type, TextValue) and c.site.type.length == 2083
    assert all(isinstance(c[n].type, JSONValue)
               for n in ("address", "previous", "moved", "settings", "scores", "pair", "labels"))
    columns = {col["name"]: col["type"] for col in
               sa.inspect(get_connection().engine).get_columns("typed_members")}
    json_ddl = {"postgresql": "JSONB", "mysql": "LONGTEXT", "sqlite": "JSON"}[tdb.name]
    assert type(columns["address"]).__name__ == json_ddl   # MariaDB's JSON is LONGTEXT + a check
    assert getattr(columns["site"], "length", None) == 2083


def test_records_round_trip(tdb: Backend) -> None:
    written = Member.create(**ann())
    assert_same(Member.find(written.id), written)
    (loaded,) = Member.where(email="ann@example.com").all()
    assert_same(loaded, written)
    assert Member.pluck("address", "pair") == [(written.address, (7, "seven"))]
    assert loaded.changed_columns() == {}
    assert Member.find_by(moved=None) is not None       # an absent document is NULL


def test_changes_to_documents_are_saved(tdb: Backend) -> None:
    member = Member.create(**ann())
    member.moved = Address(street="3 New Sq", city="Nice")
    member.settings = {**member.settings, "theme": "light"}
    member.site = url("https://example.org/")
    assert set(member.changed_columns()) == {"moved", "settings", "site"}
    member.save()
    found = Member.find(member.id)
    assert found.moved == Address(street="3 New Sq", city="Nice")
    assert found.settings["theme"] == "light" and found.site == url("https://example.org/")
    assert found.changed_columns() == {}


def test_where_binds_values_like_the_columns(tdb: Backend) -> None:
    member = Member.create(**ann())
    Member.create(**ann(email="bob@example.com", site="https://bob.example.com/",
                        address=Address(street="9 Side St", city="Lille"), plan=Plan.FREE,
                        token=uuid.uuid4()))
    assert Member.where(site=member.site).pluck("email") == ["ann@example.com"]
    assert Member.where("site = ?", member.site).pluck("email") == ["ann@example.com"]
    assert Member.where(token=member.token).count() == 1
    assert Member.where("token = ?", member.token).count() == 1
    assert Member.where(plan=Plan.FREE).pluck("email") == ["bob@example.com"]
    # a whole document: by value on PostgreSQL (JSONB), as the text written elsewhere
    assert Member.where(address=member.address).pluck("email") == ["ann@example.com"]


def test_bulk_inserts_and_upserts(tdb: Backend) -> None:
    token = uuid.uuid4()
    rows = [ann(email=f"u{i}@example.com", token=uuid.uuid4(),
                address={"street": f"{i} Row St", "city": "Metz"}) for i in range(3)]
    assert Member.bulk_insert([*rows, Member(**ann(email="rec@example.com", token=token))]) == 4
    found = {m.email: m for m in Member.all()}
    assert found["u1@example.com"].address == Address(street="1 Row St", city="Metz")
    assert found["rec@example.com"].site == url("https://example.com/ann?tab=1")

    first = found["u0@example.com"]
    Member.insert_or_update({**ann(token=first.token), "id": first.id, "email": first.email,
                             "address": Address(street="moved", city="Metz")}, conflict_keys=["id"])
    assert Member.find(first.id).address.street == "moved"
    updates = [{**ann(token=m.token), "id": m.id, "email": m.email, "scores": {"math": m.id}}
               for m in Member.all()]
    Member.bulk_insert_or_update(updates, conflict_keys=["id"])
    assert {m.id: m.scores for m in Member.all()} == {m["id"]: {"math": m["id"]} for m in updates}
    assert Member.count() == 4


def test_a_url_too_long_for_its_column_is_refused(tdb: Backend) -> None:
    long_url = "https://example.com/" + "a" * 2100
    with pytest.raises(ValueNotStorable, match="2120 characters long.*holds 2083"):
        Member.create(**ann(home=long_url))
    assert Member.count() == 0


def test_emailstr_without_email_validator_says_what_to_install() -> None:
    """email-validator is pydantic's optional dependency for EmailStr."""
    script = textwrap.dedent("""
        import sys
        sys.modules["email_validator"] = None          # as if it were not installed
        from pydantic import EmailStr
        from rhosocial_ar import ActiveRecord
        try:
            class Contact(ActiveRecord):
                email: EmailStr
        except ImportError as exc:
            print(exc)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "email-validator is not installed" in result.stdout
    assert "pydantic[email]" in result.stdout
