"""Building records from database rows, fast: one generated function per column list.

    load = loader(User, ('id', 'name'), converters=((1, str.strip),))
    records = load(cursor, 'default')      # [User(id=1, name='ann'), ...]

Rows of the library's own SELECTs are trusted: they are not validated again.
Per row, the generated function unpacks the tuple, applies SQLAlchemy's
result processors where a column needs one, and fills pydantic's slots and
the record's state slots directly; written out for the exact columns, it
costs a fraction of a loop over names and of ``model_construct``. Records
keep their column values dict as their snapshot: pydantic replaces
``__dict__`` on every validated assignment, so the snapshot stays as loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pydantic import BaseModel

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
    # names are field names (identifiers), but go in as literals all the same
    columns = [f"c{i}" for i in range(len(names))]
    # values go into the dict pydantic's __dict__ slot creates: it shares its keys
    # with every record of the class (a third smaller than a dict of its own)
    fill = "".join(
        f"\n        values[{name!r}] = {f'p{i}({column})' if i in converters else column}"
        for i, (name, column) in enumerate(zip(names, columns, strict=True))
    )
    complete = set(names) >= model.model_fields.keys()
    fields_set = "fields_set" if complete else "set(fields_set)"   # pydantic adds to it
    snapshot = "values" if shares_snapshot(model) else "dict(values)"
    unpack = f"({', '.join(columns)},)"
    source = f"""
def load(rows, origin):
    records = []
    append = records.append
    for {unpack} in rows:
        record = new(model)
        values = get_dict(record){fill}
        set_fields_set(record, {fields_set})
        set_saved(record, {snapshot})
        set_origin(record, origin)
        set_relations(record, None)
        append(record)
    return records
"""
    namespace: dict[str, Any] = {
        "model": model, "new": object.__new__, "fields_set": frozenset(names) if not complete
        else set(names),
        "get_dict": _get_dict, "set_fields_set": _set_fields_set,
        **{f"set_{slot[4:]}": getattr(model, slot).__set__ for slot in STATE_SLOTS},
        **{f"p{i}": process for i, process in converters.items()},
    }
    exec(compile(source, f"<rhosocial_ar loader {model.__name__}>", "exec"), namespace)  # noqa: S102
    return namespace["load"]  # type: ignore[no-any-return]
