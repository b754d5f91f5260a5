"""The fence: its internals checked, its fallback when one goes, and every spelling compiled once."""

from __future__ import annotations

import decimal
import logging
import operator
import sys
import traceback
from typing import ClassVar

import pytest
import sqlalchemy as sa
from sqlalchemy.sql.compiler import SQLCompiler

from rhosocial_ar import (
    ActiveRecord,
    ConfigurationError,
    ConnectionManager,
    Field,
    HasMany,
    IntegerPKMixin,
    get_connection,
)
from rhosocial_ar.fastpath import execution, guard, internals, source
from tests.conftest import make_tables
from tests.test_execution import run_fresh


@pytest.fixture
def fresh_verdict():
    """Probe again before and after: a test that takes an internal away leaves nothing behind."""
    internals.reset()
    yield
    internals.reset()


class _HiddenFromFence:
    """An attribute SQLAlchemy still sees but ``rhosocial_ar.fastpath`` does not.

    What a release that renamed an internal would look like to the library:
    SQLAlchemy's own code uses the new name and keeps working. A data
    descriptor, so it also hides what an instance keeps in its ``__dict__``.
    """

    def __init__(self, name: str, real: object) -> None:
        self.name, self.real = name, real

    def __get__(self, obj, objtype=None):
        if sys._getframe(1).f_globals.get("__name__", "").startswith("rhosocial_ar.fastpath"):
            raise AttributeError(f"{self.name} (hidden from the fence by the test)")
        if obj is not None and self.name in vars(obj):
            return vars(obj)[self.name]
        if self.real is None:
            raise AttributeError(self.name)
        return self.real.__get__(obj, objtype) if hasattr(self.real, "__get__") else self.real

    def __set__(self, obj, value):
        vars(obj)[self.name] = value


def hide_from_fence(monkeypatch, cls: type, name: str) -> None:
    """Hide ``name`` from the fence on ``cls`` and every class below it that defines it."""
    classes, todo = set(), [cls]
    while todo:
        klass = todo.pop()
        if klass not in classes:
            classes.add(klass)
            todo.extend(klass.__subclasses__())
    for klass in classes:
        owner = next((k for k in klass.__mro__ if name in vars(k)), None)
        real = vars(owner)[name] if owner is not None else None
        monkeypatch.setattr(klass, name, _HiddenFromFence(name, real), raising=False)


# each internal the fence relies on, hidden as a future release would rename it
INTERNALS = [
    (SQLCompiler, "_bind_processors"),
    (SQLCompiler, "_result_columns"),
    (SQLCompiler, "_process_parameters_for_postcompile"),
    (sa.types.TypeEngine, "_cached_result_processor"),
    (sa.types.TypeEngine, "_unwrapped_dialect_impl"),
    (sa.sql.ClauseElement, "_generate_cache_key"),
    (sa.engine.Connection, "_handle_dbapi_exception"),
    (sa.engine.Connection, "_dbapi_connection"),
    (sa.engine.Connection, "_echo"),
    (sa.engine.Connection, "_has_events"),
]
IDS = [f"{c.__name__}.{n}" for c, n in INTERNALS]


def test_every_internal_is_there_and_behaves_on_the_installed_versions(fresh_verdict):
    assert internals.check() == []
    assert internals.usable() is True and internals.disabled_reason() is None


@pytest.mark.parametrize(("cls", "name"), INTERNALS, ids=IDS)
def test_each_internal_hidden_is_named_once(cls, name, monkeypatch, fresh_verdict, caplog):
    hide_from_fence(monkeypatch, cls, name)
    internals.reset()
    with caplog.at_level(logging.WARNING, logger="rhosocial_ar"):
        assert internals.usable() is False
        assert internals.usable() is False
    assert name in (internals.disabled_reason() or "")
    warnings = [r for r in caplog.records if r.name == "rhosocial_ar"]
    assert len(warnings) == 1 and name in warnings[0].getMessage()


@pytest.mark.backends("sqlite")
@pytest.mark.parametrize(("cls", "name"), INTERNALS, ids=IDS)
def test_with_an_internal_hidden_every_operation_works_with_one_warning(
        cls, name, db, monkeypatch, fresh_verdict, caplog):
    check_hidden_internal(cls, name, db, monkeypatch, caplog)


def test_with_an_internal_hidden_every_backend_works(db, monkeypatch, fresh_verdict, caplog):
    check_hidden_internal(SQLCompiler, "_bind_processors", db, monkeypatch, caplog)


def check_hidden_internal(cls, name, db, monkeypatch, caplog) -> None:
    fast = run_fresh(db)
    hide_from_fence(monkeypatch, cls, name)
    internals.reset()
    with caplog.at_level(logging.WARNING, logger="rhosocial_ar"):
        slow = run_fresh(db)
    assert slow == fast
    warnings = [r for r in caplog.records if r.name == "rhosocial_ar"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert name in (internals.disabled_reason() or "")


def test_statements_that_cannot_be_prepared_go_through_sqlalchemy_with_one_warning(
        db, monkeypatch, fresh_verdict, caplog):
    fast = run_fresh(db)

    def broken(self, compiled, keys=()):
        raise KeyError("age")          # what SQLAlchemy 2.0.36 did to Prepared

    calls = []
    real_run = execution._run
    monkeypatch.setattr(execution.Prepared, "__init__", broken)
    monkeypatch.setattr(execution, "_run", lambda *a, **k: calls.append(1) or real_run(*a, **k))
    internals.reset()
    with caplog.at_level(logging.WARNING, logger="rhosocial_ar"):
        assert run_fresh(db) == fast
    warnings = [r for r in caplog.records if r.name == "rhosocial_ar"]
    assert len(warnings) == 1 and "KeyError" in warnings[0].getMessage()
    assert calls == []                 # every statement went through SQLAlchemy
    assert internals.usable() is True  # the probe found nothing wrong with SQLAlchemy itself


def test_a_statement_that_cannot_be_prepared_costs_only_itself(db, monkeypatch, fresh_verdict):
    make_tables(Owner)
    Owner.create(name="a", age=1)
    real = execution.Prepared.__init__

    def picky(self, compiled, keys=()):
        if "age > " in compiled.string:
            raise KeyError("age")
        real(self, compiled, keys)

    calls = []
    real_run = execution._run
    monkeypatch.setattr(execution.Prepared, "__init__", picky)
    monkeypatch.setattr(execution, "_run", lambda *a, **k: calls.append(1) or real_run(*a, **k))
    assert Owner.where("age > ?", 0).pluck("name") == ["a"]
    assert calls == []
    assert Owner.where("age = ?", 1).pluck("name") == ["a"]
    assert calls == [1]


def test_the_fast_path_can_be_switched_off_per_connection(db):
    fast = run_fresh(db)
    ConnectionManager.configure({"default": {**db.config(0), "fast_path": False}})
    with get_connection().engine.connect() as conn:
        assert guard.watched(conn) is True
    calls = []
    real = execution._run
    try:
        execution._run = lambda *a, **k: calls.append(1) or real(*a, **k)
        assert run_fresh(db) == fast
    finally:
        execution._run = real
    assert calls == []
    with pytest.raises(ConfigurationError, match="'fast_path' must be true or false"):
        ConnectionManager.configure({"other": {**db.config(0), "fast_path": "no"}})


def test_generated_code_shows_its_source_in_tracebacks():
    namespace: dict = {}
    fail = source.define("def explode(x):\n    return 1 / x\n", "explode", namespace, "test")
    with pytest.raises(ZeroDivisionError) as info:
        fail(0)
    text = "".join(traceback.format_exception(info.value))
    assert "<rhosocial_ar test " in text and "return 1 / x" in text


# -- every spelling compiles once -------------------------------------------------------


class Owner(IntegerPKMixin, ActiveRecord):
    __table_name__ = "fence_owners"
    id: int | None = None
    name: str
    age: int = 0
    score: decimal.Decimal = decimal.Decimal("0")
    notes: str | None = None
    pets: ClassVar[HasMany[Pet]] = HasMany(foreign_key="owner_id")


class Pet(IntegerPKMixin, ActiveRecord):
    __table_name__ = "fence_pets"
    id: int | None = None
    owner_id: int
    name: str


def spellings(t: int) -> list:
    """Every documented spelling, with values that depend on ``t``."""
    c = Owner.c
    out = [
        Owner.where(age=t).pluck("id"),
        Owner.where("age > ?", t).order_by("id").limit(3).offset(1).pluck("name"),
        [o.name for o in Owner.where(c.age > t).order_by("id").limit(20).all()],
        Owner.where(c.id.in_([t, t + 1, t + 2])).order_by("-id").pluck("id"),
        Owner.where(c.id.in_([t, t + 1])).order_by("-id").pluck("id"),
        Owner.where(c.age.between(t, t + 3)).count(),
        Owner.where(c.name.like(f"o{t}%")).pluck("name"),
        Owner.where(sa.and_(c.age >= t, sa.or_(c.id < t + 5, sa.not_(c.age > 50)))).count(),
        Owner.where(c.notes.is_(None)).where(c.age > t).count(),
        Owner.where(c.age > t).order_by(c.age.desc()).limit(2).pluck("age"),
        Owner.where(c.age > t).count(),
        Owner.where(c.age > t).sum("age"),
        Owner.where(c.age > t).avg("score"),
        Owner.where(age=[t, t + 1]).min("age"),
        Owner.where(c.age < t + 10).max("age"),
        Owner.where(c.age > t).order_by("id").limit(3).sum("age"),
        Owner.where(c.age == t).exists(),
        Owner.where(c.id.between(t, t + 2)).update(age=c.age + 1),
        Owner.where(c.id == t).update(notes="n", name=sa.func.upper(c.name)),
        Owner.where("id = ?", t + 30).update(age=t),
        Owner.where(c.id == t + 40).delete(),
        Owner.insert_or_update({"id": t + 60, "name": f"up{t}", "age": t}, conflict_keys=["id"]),
        [p.name for p in Owner.find(t).pets()],
        [p.name for p in Owner.where(c.id.in_([t + 1, t + 2])).with_("pets").all()[0].pets()],
    ]
    return out


def test_every_spelling_reuses_its_compiled_statement(db, monkeypatch):
    make_tables(Owner, Pet)
    Owner.bulk_insert([{"name": f"o{i}", "age": i, "score": decimal.Decimal(i) / 4}
                       for i in range(1, 80)])
    Pet.bulk_insert([{"owner_id": i % 20 + 1, "name": f"p{i}"} for i in range(60)])
    spellings(3)                              # the first of each shape compiles
    before = ([o.to_dict() for o in Owner.all()], [p.to_dict() for p in Pet.all()])
    compiled, generated = [], []
    real_init, real_define = SQLCompiler.__init__, source.define

    def counting_init(self, *args, **kwargs):
        compiled.append(type(self).__name__)
        return real_init(self, *args, **kwargs)

    def counting_define(*args, **kwargs):
        generated.append(args[3])
        return real_define(*args, **kwargs)

    monkeypatch.setattr(SQLCompiler, "__init__", counting_init)
    monkeypatch.setattr(source, "define", counting_define)
    monkeypatch.setattr(execution, "define", counting_define)
    again = spellings(5)
    assert compiled == [] and generated == []
    monkeypatch.undo()
    # the values are this call's, not the first one's: SQLAlchemy's own path, from the same
    # rows, gives the same answers
    owners, pets = before
    make_tables(Owner, Pet)
    Owner.bulk_insert(owners)
    Pet.bulk_insert(pets)
    ConnectionManager.configure({"default": {**db.config(0), "fast_path": False}})
    assert spellings(5) == again
    assert again[0] and again[2] and again[17] == 3 and again[22]


def test_an_update_value_expression_from_another_connection_is_refused(db):
    from rhosocial_ar import CrossConnectionError

    class Remote(IntegerPKMixin, ActiveRecord):
        __table_name__ = "fence_remote"
        __connection__ = "secondary"
        id: int | None = None
        age: int = 0

    make_tables(Owner, Remote)
    Owner.create(name="a", age=1)
    newest = sa.select(sa.func.max(Remote.c.age)).scalar_subquery()
    with pytest.raises(CrossConnectionError):
        Owner.where(Owner.c.id == 1).update(age=newest)
    with pytest.raises(CrossConnectionError):
        Owner.where(Owner.c.age < newest).delete()
    assert Owner.find(1).age == 1


def test_quick_shape_keys_never_join_what_sqlalchemy_keeps_apart():
    """Equal quick keys must mean equal SQLAlchemy cache keys (equal SQL, equal types)."""
    from rhosocial_ar.fastpath.shapes import _QUICK, shape_of

    c = Owner.c
    other = sa.Table("fence_other", sa.MetaData(), sa.Column("age", sa.Integer)).c
    corpus = []
    for v in (1, 2, 7):
        corpus += [
            c.age > v, c.age >= v, c.age < v, c.age == v, c.age != v, other.age > v,
            c.id.between(v, v + 1), c.id.between(v, v + 1, symmetric=True), c.id.in_([v, v + 1]),
            c.id.in_([v]), c.id.not_in([v]), c.notes.is_(None), c.notes.is_not(None),
            c.name.like(f"a{v}%"), c.name.like(f"a{v}%", escape="/"), c.name.ilike(f"{v}"),
            c.age + v, c.age - v, c.age * v, ~(c.age > v),
            sa.and_(c.age > v, c.name == f"n{v}"), sa.or_(c.age > v, c.name == f"n{v}"),
            sa.and_(c.age > v, sa.or_(c.id < v, c.notes.is_(None))),
            c.age > float(v) + 0.5, c.name == sa.func.upper(c.name), c.score > decimal.Decimal(v),
            sa.func.count(), sa.func.count(c.id), sa.func.count(other.age), sa.func.sum(c.age),
            sa.func.sum(c.score), sa.func.max(c.name), sa.func.min(c.age), sa.func.upper(c.name),
            sa.func.foo(c.age, type_=sa.Integer), sa.func.foo(c.age, type_=sa.String),
            sa.func.pkg.foo(c.age), sa.func.count(sa.distinct(c.id)), sa.func.coalesce(c.age, v),
            sa.func.count().filter(c.age > v),
        ]
    shapes = [(shape_of(e), e._generate_cache_key()) for e in corpus]
    quick = [(s, k) for s, k in shapes if s is not None and s[0][0] is _QUICK]
    assert len(quick) >= 20 * 3          # the common spellings take the quick key
    for (a_shape, a_key) in quick:
        for (b_shape, b_key) in quick:
            if a_shape[0] == b_shape[0]:
                assert a_key.key == b_key.key
                assert len(a_shape[1]) == len(b_shape[1])
    # and the same spelling with other values shares its key
    assert shape_of(c.age > 1)[0] == shape_of(c.age > 99)[0]
    assert shape_of(c.id.between(1, 2))[0] == shape_of(c.id.between(5, 9))[0]
    assert shape_of(c.age > 1)[0] != shape_of(other.age > 1)[0]
    # functions of columns: one key per function, arguments and result type
    assert shape_of(sa.func.count())[0] == shape_of(sa.func.count())[0]
    assert shape_of(sa.func.sum(c.age))[0] != shape_of(sa.func.sum(other.age))[0]
    assert shape_of(sa.func.foo(c.age))[0] != shape_of(sa.func.pkg.foo(c.age))[0]
    assert shape_of(sa.func.max(c.age))[0][0] is _QUICK


class Measured(IntegerPKMixin, ActiveRecord):
    __table_name__ = "fence_measured"
    id: int | None = None
    n: int = 0
    label: str = ""
    ratio: float = 0.0
    big: int = Field(0, sa_type=sa.BigInteger)
    body: str = Field("", sa_type=sa.Text)


DIALECTS = [sa.create_engine(url).dialect for url in
            ("sqlite://", "postgresql+psycopg2://", "mysql+pymysql://")]


def _rendered(expr) -> list:
    return [str(expr.compile(dialect=d)) for d in DIALECTS] + [type(expr.type), expr.negate]


def test_model_columns_build_what_sqlalchemy_builds(fresh_verdict):
    """``Model.c.x <op> value`` equals what a plain Column builds, quick or not."""
    table = Measured.__table__
    twin = sa.Table("fence_measured", sa.MetaData(),
                    *[sa.Column(c.name, c.type, primary_key=c.primary_key) for c in table.c])
    values = {"n": [3, 3.5, True, None, "3"], "big": [2**40], "label": ["x", 4, None],
              "ratio": [0.5, 2], "body": ["t"], "id": [1]}
    ops = [operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge,
           operator.add, operator.sub]
    quick = 0
    for name, samples in values.items():
        ours, plain = table.c[name], twin.c[name]
        assert isinstance(ours, sa.Column)
        for value in samples:
            for op in ops if name not in ("label", "body") else ops[:-1]:   # no '-' on strings
                try:
                    expected = op(plain, value)
                except Exception as exc:     # e.g. '-' on a string column: the same refusal
                    with pytest.raises(type(exc)):
                        op(ours, value)
                    continue
                built = op(ours, value)
                assert _rendered(built) == _rendered(expected), (name, value, op)
                if getattr(expected, "right", None) is not None and hasattr(built.right, "type"):
                    assert type(built.right.type) is type(expected.right.type)
                if expected.negate is not None:
                    assert _rendered(~built) == _rendered(~expected)
                quick += built.right.type is ours.type if hasattr(built, "right") else 0
    assert quick >= 20
    for low, high, symmetric in ((1, 2, False), (1, 2, True), (1.5, 2, False), (1, None, False)):
        for ours, plain in ((table.c.n, twin.c.n), (table.c.label, twin.c.label)):
            if ours is table.c.label:
                low, high = str(low), str(high)
            built, expected = ours.between(low, high, symmetric), plain.between(low, high, symmetric)
            assert _rendered(built) == _rendered(expected) and _rendered(~built) == _rendered(~expected)
            assert built.modifiers == expected.modifiers
    # LIKE and the NULL tests, quick on plain columns, SQLAlchemy's own for anything else
    for name, value in (("label", "x%"), ("label", 3), ("body", "t_")):
        for escape in (None, "/"):
            for method in ("like", "not_like", "notlike"):
                try:
                    expected = getattr(twin.c[name], method)(value, escape=escape)
                except Exception as exc:
                    with pytest.raises(type(exc)):
                        getattr(table.c[name], method)(value, escape=escape)
                    continue
                built = getattr(table.c[name], method)(value, escape=escape)
                assert _rendered(built) == _rendered(expected) and _rendered(~built) == _rendered(~expected)
                assert built.modifiers == expected.modifiers, (name, value, escape, method)
    for name in ("n", "label", "ratio"):
        ours, plain = table.c[name], twin.c[name]
        pairs = [(ours.is_(None), plain.is_(None)), (ours.is_not(None), plain.is_not(None)),
                 (ours.isnot(None), plain.isnot(None)), (ours == None, plain == None),  # noqa: E711
                 (ours != None, plain != None), (ours.is_(True), plain.is_(True))]     # noqa: E711
        for built, expected in pairs:
            assert _rendered(built) == _rendered(expected) and _rendered(~built) == _rendered(~expected)
            assert built.right is expected.right or type(built.right) is type(expected.right)
    # a column compared with a column, and the usual SQLAlchemy spellings, are SQLAlchemy's
    assert str(Measured.c.n == Measured.c.big) == "fence_measured.n = fence_measured.big"
    assert {Measured.c.n: 1}[table.c.n] == 1          # still hashable, by identity


def test_model_columns_leave_building_to_sqlalchemy_when_the_fence_is_off(
        monkeypatch, fresh_verdict):
    from rhosocial_ar.fastpath import columns

    def refuse(*args):
        raise AssertionError("built directly with the fence off")

    monkeypatch.setattr(columns, "build_comparison", refuse)
    monkeypatch.setattr(columns, "build_arithmetic", refuse)
    monkeypatch.setattr(columns, "build_between", refuse)
    monkeypatch.setattr(columns, "build_like", refuse)
    monkeypatch.setattr(columns, "build_null_test", refuse)
    hide_from_fence(monkeypatch, SQLCompiler, "_bind_processors")
    internals.reset()
    expr = Measured.c.n > 3
    assert str(expr) == "fence_measured.n > :n_1" and expr.right.value == 3
    assert str(Measured.c.n + 1) == "fence_measured.n + :n_1"
    assert str(Measured.c.n.between(1, 2)) == "fence_measured.n BETWEEN :n_1 AND :n_2"
    assert str(Measured.c.label.like("a%")) == "fence_measured.label LIKE :label_1"
    assert str(Measured.c.label.is_(None)) == "fence_measured.label IS NULL"


def test_parameters_are_copied_only_while_copies_equal_what_sqlalchemy_builds(
        monkeypatch, fresh_verdict):
    from rhosocial_ar.fastpath import expressions

    assert internals.usable() and expressions._copying      # the installed versions: copied
    copied = Measured.c.n > 3
    # a release whose parameters carry an attribute the copy would leave out
    monkeypatch.setattr(expressions, "_BIND_OWN", expressions._BIND_OWN | {"callable"})
    internals.reset()
    assert internals.usable() and not expressions._copying   # constructors, still fast
    built = Measured.c.n > 3
    assert "callable" in vars(built.right) and str(built) == str(copied)
    # a release without the anonymous name's class: constructors too
    monkeypatch.undo()
    monkeypatch.setattr(expressions, "_anonymous_label", None)
    internals.reset()
    assert internals.usable() and not expressions._copying
    assert str(Measured.c.n.between(1, 2)) == "fence_measured.n BETWEEN :n_1 AND :n_2"


def test_copied_parameters_of_one_column_keep_their_own_values(db):
    make_tables(Measured)
    Measured.bulk_insert([{"n": n, "label": f"l{n}"} for n in range(10)])
    c = Measured.c
    both = Measured.where((c.n > 2) & (c.n < 6) & ~(c.n == 4)).order_by("n")
    assert both.pluck("n") == [3, 5]
    assert Measured.where(c.n.between(2, 7), c.n.between(5, 9)).count() == 3
    assert Measured.where(c.n.between(5, 9)).update(n=c.n + 100) == 5
    assert Measured.where(c.n >= 100).order_by("n").pluck("n") == [105, 106, 107, 108, 109]


class Labelled(IntegerPKMixin, ActiveRecord):
    __table_name__ = "fence_labelled"
    n: int
    label: str | None = None


def test_like_and_null_tests_built_directly_find_the_rows(db):
    make_tables(Labelled)
    Labelled.bulk_insert([{"n": n, "label": None if n % 3 == 0 else f"l{n}_x"} for n in range(12)])
    Measured = Labelled     # noqa: N806 - the queries read as the ones above
    c = Measured.c
    assert type(c.label.like("a")) is sa.BinaryExpression and c.label.like("a").right.type is c.label.type
    assert Measured.where(c.label.is_(None)).order_by("n").pluck("n") == [0, 3, 6, 9]
    assert Measured.where(c.label == None).count() == 4                                  # noqa: E711
    assert Measured.where(c.label.is_not(None), c.label != None).count() == 8           # noqa: E711
    assert Measured.where(c.label.like("l1%")).order_by("n").pluck("n") == [1, 10, 11]
    assert Measured.where(c.label.like("l/_%", escape="/")).pluck("n") == []     # _ taken as _
    assert Measured.where(c.label.like("l1/_x", escape="/")).pluck("n") == [1]
    assert Measured.where(c.label.not_like("l1%"), c.n < 6).order_by("n").pluck("n") == [2, 4, 5]
    assert Measured.where(~c.label.like("l%")).count() == 0     # NULL is neither


def test_rows_as_dicts_take_any_names():
    from rhosocial_ar.fastpath import as_dicts

    names = ("age", "it's", 'a "b"\n}', "age2", "age")
    rows = [(1, 2, 3, 4, 5), (6, 7, 8, 9, 10)]
    assert as_dicts(names)(rows) == [dict(zip(names, row, strict=True)) for row in rows]
    assert as_dicts(names) is as_dicts(names) and as_dicts(()) ([(), ()]) == [{}, {}]
    with pytest.raises(IndexError) as failed:
        as_dicts(("a", "b"))([(1,)])
    assert "row[1]" in "".join(traceback.format_exception(failed.value))   # its source shows
