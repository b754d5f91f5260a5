"""Which models exist and which tables belong to which connection.

    tables_by_connection()['default'].create_all(engine)
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import sqlalchemy as sa

__all__ = [
    "all_models", "metadata_for", "models_named", "models_of_table", "register_model",
    "register_table", "tables_by_connection",
]

_metadata: dict[str, sa.MetaData] = {}
# every model class by name and by table, newest last
_by_name: dict[str, list[Any]] = defaultdict(list)
_by_table: dict[sa.Table, list[Any]] = defaultdict(list)


def register_model(model: Any) -> None:
    _by_name[model.__name__].append(model)
    _by_table[model.__table__].append(model)


def models_named(name: str) -> list[Any]:
    return list(_by_name.get(name, ()))


def models_of_table(table: Any) -> list[Any]:
    return list(_by_table.get(table, ()))


def all_models() -> list[Any]:
    """Every model class declared so far, oldest first within a name."""
    return [model for models in _by_name.values() for model in models]


# names for the constraints models declare without one (unique=True, foreign_key=...),
# the same on every dialect, so that a migration can drop what an earlier one created
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
}


def metadata_for(connection_name: str) -> sa.MetaData:
    """The MetaData that holds the tables of the models on one connection."""
    if connection_name not in _metadata:
        _metadata[connection_name] = sa.MetaData(naming_convention=NAMING_CONVENTION)
    return _metadata[connection_name]


def register_table(connection_name: str, table: sa.Table) -> None:
    """Record an adopted table under its connection unless the name is taken."""
    metadata = metadata_for(connection_name)
    if table.metadata is not metadata and table.key not in metadata.tables:
        table.to_metadata(metadata)


def tables_by_connection() -> dict[str, sa.MetaData]:
    return dict(_metadata)
