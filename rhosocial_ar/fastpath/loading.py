"""Building records from database rows, fast: one generated function per column list.

    load = loader(User, ('id', 'name'), converters=((1, str.strip),))
    records = load(cursor, 'default')      # [User(id=1, name='ann'), ...]

Rows of the library's own SELECTs are trusted: they are not validated again.
Per row, the generated function unpacks the tuple, applies SQLAlchemy's
result processors where a column needs one, and fills the record's values
and slots directly (pydantic's own as its constructors leave them: no
extra values, private attributes at their defaults); written out for the
exact columns, it costs a fraction of a loop over names and of
``model_construct``. Records keep their column values dict as their
snapshot: pydantic replaces ``__dict__`` on every validated assignment, so
the snapshot stays as loaded.

A record is filled as an instance of a twin of its model: a subclass that
adds nothing but Python's own ``__setattr__``. Pydantic's ``__setattr__``
(a Python method) keeps CPython from specialising attribute stores on the
model, so each value and slot would otherwise cost a call; on the twin
every store is a plain one. The filled record then becomes an instance of
the model itself (``__class__`` assignment, which CPython allows between
classes of one layout). Where that is refused, or the twin would be seen
(a model's own ``__init_subclass__``, a field behind a data descriptor),
the values dict and the slots are filled through their descriptors.
"""

from __future__ import annotations

import copy
import keyword
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from .source import define

__all__ = ["STATE_SLOTS", "loader", "shares_snapshot"]

# the record state the library keeps beside pydantic's own slots
STATE_SLOTS = ("_ar_saved", "_ar_origin", "_ar_relations")

Loader = Callable[[Iterable[Sequence[Any]], "str | None"], list[Any]]

# pydantic's slots, set through their descriptors (what object.__setattr__ finds, minus the lookup)
_slots: Any = vars(BaseModel)
_get_dict = _slots["__dict__"].__get__    # creates the (empty) dict on first use
_set_fields_set = _slots["__pydantic_fields_set__"].__set__


def shares_snapshot(model: type) -> bool:
    """Whether a record's values dict can double as its snapshot.

    Only while every assignment is validated: pydantic then builds a new
    ``__dict__`` instead of changing the old one in place.
    """
    return bool(model.model_config.get("validate_assignment"))  # type: ignore[attr-defined]


def loader(model: Any, names: Sequence[str],
           converters: Sequence[tuple[int, Callable[[Any], Any]]] = ()) -> Loader:
    """The function building ``model`` records from rows of ``names`` (cached per model)."""
    cache = model.__ar_meta__.loaders
    key = (tuple(names), tuple(converters))
    found: Loader | None = cache.get(key)
    if found is None:
        found = cache[key] = _generate(model, key[0], dict(key[1]))
    return found


def _generate(model: Any, names: tuple[str, ...],
              converters: dict[int, Callable[[Any], Any]]) -> Loader:
    columns = [f"c{i}" for i in range(len(names))]
    values = [f"p{i}({column})" if i in converters else column for i, column in enumerate(columns)]
    complete = set(names) >= model.model_fields.keys()
    fields_set = "fields_set" if complete else "set(fields_set)"   # pydantic adds to it
    # the snapshot: the values dict itself, or a copy (see shares_snapshot)
    snapshot = "{}" if model.__ar_meta__.shares_snapshot else "dict({})"
    # private attributes start at their defaults, as pydantic's constructors leave them
    private = "\n        init_private(record, None)" if model.__private_attributes__ else ""
    twin = _twin(model, names)
    locals_row = f"({', '.join(columns)},)"
    if twin is not None:
        # names are field names (identifiers), checked by _twin. Without converters the
        # row unpacks straight into the record; with them, each value is stored in turn:
        # the order of the stores is the order of __dict__, which dumps and reprs follow
        if converters:
            row, fill = locals_row, "".join(f"\n        record.{name} = {value}"
                                            for name, value in zip(names, values, strict=True))
        else:
            row, fill = "row", f"\n        {', '.join(f'record.{name}' for name in names)}, = row"
        body = fill + f"""
        record.__pydantic_fields_set__ = {fields_set}
        record.__pydantic_extra__ = None
        record.__pydantic_private__ = None
        record._ar_saved = {snapshot.format("record.__dict__")}
        record._ar_origin = origin
        record._ar_relations = None
        record.__class__ = model""" + private
        first = "record = twin()"
    else:
        # names go in as literals; the dict pydantic's __dict__ slot creates shares
        # its keys with every record of the class (a third smaller than its own)
        row = locals_row
        body = "\n        values = get_dict(record)" + "".join(
            f"\n        values[{name!r}] = {value}"
            for name, value in zip(names, values, strict=True)) + f"""
        set_fields_set(record, {fields_set})
        set_saved(record, {snapshot.format("values")})
        set_origin(record, origin)
        set_relations(record, None)""" + private
        first = "record = new(model)"
    source = f"""
def load(rows, origin):
    records = []
    append = records.append
    for {row} in rows:
        {first}{body}
        append(record)
    return records
"""
    namespace: dict[str, Any] = {
        "model": model, "twin": twin, "new": object.__new__,
        "fields_set": set(names) if complete else frozenset(names),
        "get_dict": _get_dict, "set_fields_set": _set_fields_set,
        "init_private": _init_private,
        **{f"set_{slot[4:]}": getattr(model, slot).__set__ for slot in STATE_SLOTS},
        **{f"p{i}": process for i, process in converters.items()},
    }
    return define(source, "load", namespace, f"loader {model.__qualname__}")  # type: ignore[return-value]


def _defaults_of_private_attributes(record: Any, _context: Any) -> None:
    """Private attributes at their defaults, through pydantic's public ``ModelPrivateAttr``."""
    private: dict[str, Any] = {}
    for name, attribute in record.__private_attributes__.items():
        factory = attribute.default_factory
        if factory is not None:
            takes_data = getattr(attribute, "default_factory_takes_validated_data", False)
            private[name] = factory({**vars(record), **private}) if takes_data else factory()
        elif attribute.default is not PydanticUndefined:
            private[name] = copy.deepcopy(attribute.default)
    _set_private(record, private)


_set_private = _slots["__pydantic_private__"].__set__

try:   # what pydantic's own constructors call (factories given validated data included)
    from pydantic._internal._model_construction import init_private_attributes as _init_private
except ImportError:     # internals.check() reports it
    _init_private = _defaults_of_private_attributes

_TWIN = object()     # the key of a model's twin among its loaders
# classes whose __init_subclass__ does nothing a twin could disturb
_QUIET_BASES = (object, BaseModel, Generic)


def _twin(model: Any, names: tuple[str, ...]) -> type | None:
    """``model``'s twin for filling records of ``names`` (see the module's docstring), or None."""
    cache = model.__ar_meta__.loaders
    if _TWIN not in cache:
        cache[_TWIN] = _make_twin(model)
    twin: type | None = cache[_TWIN]
    if twin is None or not all(name.isidentifier() and not keyword.iskeyword(name)
                               and not _intercepted(twin, name) for name in names):
        return None
    return twin


def _make_twin(model: Any) -> type | None:
    # a model's own __init_subclass__ would be told of the twin: leave it alone
    if any("__init_subclass__" in vars(klass) for klass in model.__mro__
           if klass not in _QUIET_BASES):
        return None
    # type.__new__ of the model's metaclass itself: pydantic's __new__ would build a model
    twin: type = type.__new__(type(model), f"{model.__name__}Loading", (model,), {
        "__module__": model.__module__, "__qualname__": f"{model.__qualname__}Loading",
        "__slots__": (), "__setattr__": object.__setattr__, "__delattr__": object.__delattr__,
        "__init__": object.__init__,      # twin() is a bare instance, a little faster than new()
    })
    probe: Any = object.__new__(twin)
    try:
        probe.__class__ = model
    except TypeError:      # an interpreter that does not allow it for these classes
        return None
    return twin


def _intercepted(twin: type, name: str) -> bool:
    """Whether storing ``name`` on a twin would run a data descriptor, not fill the value."""
    for klass in twin.__mro__:
        if name in vars(klass):
            return hasattr(type(vars(klass)[name]), "__set__")
    return False
