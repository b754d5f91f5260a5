"""The public surface promised by API.md is importable as spelled there."""

import importlib

import rhosocial_ar

API_NAMES = [
    "ConnectionManager", "get_connection", "ActiveRecord", "IntegerPKMixin", "TimestampMixin",
    "SoftDeleteMixin", "OptimisticLockMixin", "HasMany", "HasOne", "BelongsTo", "Field",
    "Transaction", "two_phase", "recover", "transfer", "ARError", "ConfigurationError",
    "ConnectionNotFound", "RecordNotFound", "UnknownColumnError", "ReadOnlyError",
    "CrossConnectionError", "StaleObjectError", "TwoPhaseNotSupported", "InDoubtError",
]


def test_everything_in_all_is_importable():
    namespace: dict[str, object] = {}
    exec("from rhosocial_ar import *", namespace)
    missing = [name for name in rhosocial_ar.__all__ if name not in namespace]
    assert missing == []


def test_api_md_names_are_public():
    assert [n for n in API_NAMES if n not in rhosocial_ar.__all__] == []


def test_seed_module_spellings():
    assert importlib.import_module("rhosocial_ar.field").IntegerPKMixin is rhosocial_ar.IntegerPKMixin
    assert importlib.import_module("rhosocial_ar.relation").HasMany is rhosocial_ar.HasMany
    assert importlib.import_module("rhosocial_ar.relation").BelongsTo is rhosocial_ar.BelongsTo
