"""Models compile to Core tables."""

import datetime
import decimal
import enum
import uuid
from typing import Literal, Optional

import pytest
import sqlalchemy as sa

from rhosocial_ar import (
    ActiveRecord,
    ConfigurationError,
    ConnectionManager,
    Field,
    IntegerPKMixin,
    SoftDeleteMixin,
    TimestampMixin,
)
from rhosocial_ar.field import IntegerPKMixin as SeedSpelling
from tests.conftest import make_tables


class Color(enum.Enum):
    red = "red"
    blue = "blue"


class Everything(IntegerPKMixin, TimestampMixin, ActiveRecord):
    __tablename__ = "everything"
    name: str
    code: str = Field(max_length=12, unique=True)
    body: str = Field("", sa_type=sa.Text)
    qty: int = 0
    ratio: float = 0.0
    flag: bool = False
    price: decimal.Decimal = Field(decimal.Decimal("0"), max_digits=10, decimal_places=2)
    born: datetime.date | None = None
    at: Optional[datetime.datetime] = None  # noqa: UP045 - the seeds' spelling
    alarm: datetime.time | None = None
    blob: bytes | None = None
    token: uuid.UUID | None = None
    tags: list[str] = []
    meta: dict | None = None
    color: Color = Color.red
    size: Literal["s", "m", "xl"] = "m"
    ref: int | None = Field(None, index=True, sa_column_kwargs={"comment": "pointer"})


def test_types_and_options_map_to_columns():
    c = Everything.__table__.c
    assert Everything.__table__.name == "everything"
    assert Everything.c is Everything.__table__.c
    assert list(c.keys())[0] == "id" and list(c.keys())[-2:] == ["created_at", "updated_at"]
    assert c.id.primary_key and not c.id.nullable
    assert isinstance(c.name.type, sa.String) and c.name.type.length == 255 and not c.name.nullable
    assert c.code.type.length == 12 and c.code.unique
    assert isinstance(c.body.type, sa.Text)
    assert isinstance(c.qty.type, sa.Integer) and isinstance(c.flag.type, sa.Boolean)
    assert isinstance(c.ratio.type, sa.Float)
    assert (c.price.type.precision, c.price.type.scale) == (10, 2)
    assert isinstance(c.born.type, sa.Date) and c.born.nullable
    # UTCDateTime: a DATETIME whose aware values are stored as naive UTC (docs/values.md)
    assert isinstance(c.at.type.impl_instance, sa.DateTime) and c.at.nullable
    assert isinstance(c.alarm.type, sa.Time)
    assert isinstance(c.blob.type, sa.LargeBinary) and isinstance(c.token.type, sa.Uuid)
    # JSON (JSONB on PostgreSQL), read back through the field's validation (values.JSONValue)
    assert isinstance(c.tags.type.impl_instance, sa.JSON) and isinstance(c.meta.type.impl_instance, sa.JSON)
    assert isinstance(c.color.type, sa.Enum) and c.color.type.enums == ["red", "blue"]
    assert c.size.type.length == 2
    assert c.ref.index and c.ref.comment == "pointer"
    assert SeedSpelling is IntegerPKMixin


def test_round_trip_of_every_type(db):
    make_tables(Everything)
    token = uuid.uuid4()
    e = Everything.create(
        name="n", code="c1", body="long " * 100, qty=3, ratio=0.25, flag=True,
        price=decimal.Decimal("12.34"), born=datetime.date(2000, 1, 2),
        at=datetime.datetime(2020, 1, 2, 3, 4, 5, 678901), alarm=datetime.time(6, 7, 8),
        blob=b"\x00\x01\xff", token=token, tags=["a", "b"], meta={"k": [1, 2]},
        color=Color.blue, size="xl", ref=5,
    )
    got = Everything.find(e.id)
    assert got.to_dict() == e.to_dict()


def test_default_table_names():
    class Category(IntegerPKMixin, ActiveRecord):
        name: str

    class UserProfile(IntegerPKMixin, ActiveRecord):
        name: str

    class Box(IntegerPKMixin, ActiveRecord):
        name: str

    assert Category.__table__.name == "categories"
    assert UserProfile.__table__.name == "user_profiles"
    assert Box.__table__.name == "boxes"


def test_adopting_an_existing_table(db):
    metadata = sa.MetaData()
    legacy = sa.Table(
        "legacy_people", metadata,
        sa.Column("pid", sa.Integer, primary_key=True),
        sa.Column("full_name", sa.String(80), nullable=False),
        sa.Column("note", sa.Text),
    )

    class Person(ActiveRecord):
        __table__ = legacy
        pid: int | None = None
        full_name: str

    assert Person.__table__ is legacy
    metadata.create_all(ConnectionManager.get().engine)
    p = Person.create(full_name="Ada")
    assert Person.find(p.pid).full_name == "Ada"
    assert Person.__ar_meta__.pk_names == ("pid",)

    with pytest.raises(ConfigurationError, match="nickname"):
        class Broken(ActiveRecord):
            __table__ = legacy
            pid: int | None = None
            nickname: str


def test_two_models_may_map_one_table(db):
    class Account1(IntegerPKMixin, ActiveRecord):
        __table_name__ = "shared_accounts"
        name: str

    class Account2(IntegerPKMixin, ActiveRecord):
        __table_name__ = "shared_accounts"
        __connection__ = "secondary"
        name: str

    class AccountView(IntegerPKMixin, ActiveRecord):
        __table_name__ = "shared_accounts"
        name: str

    make_tables(Account1, Account2)
    Account1.create(name="one")
    Account2.create(name="two")
    assert AccountView.pluck("name") == ["one"]
    assert Account2.pluck("name") == ["two"]


def test_create_all_creates_each_connections_tables(db):
    class OnA(IntegerPKMixin, ActiveRecord):
        __table_name__ = "create_all_a"
        __connection__ = "ca_one"
        name: str

    class OnB(IntegerPKMixin, SoftDeleteMixin, ActiveRecord):
        __table_name__ = "create_all_b"
        __connection__ = "ca_two"
        name: str

    ConnectionManager.configure({"ca_one": db.config(0), "ca_two": db.config(1)})
    ConnectionManager.create_all(["ca_one", "ca_two"])
    one = sa.inspect(ConnectionManager.get("ca_one").engine).get_table_names()
    two = sa.inspect(ConnectionManager.get("ca_two").engine).get_table_names()
    assert "create_all_a" in one and "create_all_b" not in one
    assert "create_all_b" in two and "create_all_a" not in two
    OnA.create(name="x")
    OnB.create(name="y")
    assert OnA.count() == 1 and OnB.count() == 1


def test_bad_model_declarations():
    with pytest.raises(ConfigurationError, match="no column type"):
        class Weird(IntegerPKMixin, ActiveRecord):
            thing: object

    class Plain(ActiveRecord):
        __table_name__ = "no_keys"
        name: str

    with pytest.raises(ConfigurationError, match="no primary key"):
        Plain.find(1)


def test_constraints_of_an_optional_field_in_either_spelling():
    """``Annotated[...] | None`` (what pydantic 2.4 needs) sizes the column like ``Field()`` does."""
    from decimal import Decimal
    from typing import Annotated

    from pydantic import Field as PydanticField

    class Sized(ActiveRecord):
        __table_name__ = "sized_optionals"
        id: int | None = None
        code: Annotated[str, PydanticField(max_length=12)] | None = None
        amount: Annotated[Decimal, PydanticField(max_digits=30, decimal_places=4)] | None = None

    code, amount = Sized.__table__.c.code, Sized.__table__.c.amount
    assert code.nullable and code.type.length == 12
    assert amount.nullable and (amount.type.precision, amount.type.scale) == (30, 4)
