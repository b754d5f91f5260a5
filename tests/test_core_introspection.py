"""primary_key(), relations(), relation(name)."""

import pytest

from rhosocial_ar import ActiveRecord, BelongsTo, ConfigurationError, HasMany, QueryError
from tests.core_models import Member, Note, Pair, club  # noqa: F401 (a fixture)


def test_primary_key_names_the_key_field():
    assert Member.primary_key() == "id"
    assert Pair.primary_key() == ("left", "right")


def test_primary_key_of_a_keyless_table_says_so():
    import sqlalchemy as sa

    table = sa.Table("core_keyless", sa.MetaData(), sa.Column("label", sa.String(10)))

    class Keyless(ActiveRecord):
        __table__ = table
        label: str

    with pytest.raises(ConfigurationError, match="no primary key"):
        Keyless.primary_key()


def test_relations_by_name():
    found = Member.relations()
    assert list(found) == ["notes"]
    assert isinstance(found["notes"], HasMany) and found["notes"].target is Note
    found.clear()                                   # a copy: the model keeps its own
    assert list(Member.relations()) == ["notes"]
    assert Pair.relations() == {}
    member = Note.relation("member")
    assert isinstance(member, BelongsTo)
    assert (member.name, member.foreign_key, member.target) == ("member", "member_id", Member)
    assert Member.relation("notes") is Member.notes


def test_unknown_relation_names_the_ones_there_are():
    with pytest.raises(QueryError, match=r"Member has no relation 'posts'; relations: notes"):
        Member.relation("posts")
    with pytest.raises(QueryError, match="relations: none"):
        Pair.relation("x")


@pytest.mark.usefixtures("club")
def test_a_relation_from_introspection_queries():
    # on every backend: the relation object found by name is the one that loads
    ann = Member.find_by(name="ann")
    relation = Member.relation("notes")
    assert [n.title for n in relation.load(ann)] == ["a1", "a2", "a3"]
    assert relation.target.where(member_id=ann.id).count() == 3
