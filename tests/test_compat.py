"""What differs between the supported Python and pydantic versions (docs/compatibility.md)."""

from __future__ import annotations

import datetime
from collections import defaultdict

import pytest

from rhosocial_ar import registry
from rhosocial_ar.compat import add_note


def test_add_note_appends_to_the_notes_on_every_python() -> None:
    exc = ValueError("boom")
    add_note(exc, "first")
    add_note(exc, "second")
    assert exc.__notes__ == ["first", "second"]


def test_mixins_under_a_module_where_datetime_is_the_class(monkeypatch: pytest.MonkeyPatch) -> None:
    """``from datetime import datetime`` beside the mixins (pydantic < 2.9 read theirs there)."""
    monkeypatch.setattr(registry, "_metadata", {})
    monkeypatch.setattr(registry, "_by_name", defaultdict(list))
    namespace = {"__name__": "app_models", "datetime": datetime.datetime}
    exec(compile(
        "from rhosocial_ar import ActiveRecord, IntegerPKMixin, SoftDeleteMixin, TimestampMixin\n"
        "class Post(IntegerPKMixin, TimestampMixin, SoftDeleteMixin, ActiveRecord):\n"
        "    __table_name__ = 'posts'\n"
        "    title: str\n"
        "    published: datetime | None = None\n",
        "app_models.py", "exec", dont_inherit=True), namespace)
    post = namespace["Post"]
    assert post.model_fields["created_at"].annotation == datetime.datetime | None
    assert set(post.__table__.c.keys()) == {
        "id", "created_at", "updated_at", "deleted_at", "title", "published"}
