"""The one error hierarchy of rhosocial_ar.

    try:
        User.find(42)
    except RecordNotFound as exc:
        print(exc)          # User with id=42 not found

Everything the library raises on its own derives from :class:`ARError`.
Database errors are SQLAlchemy's (``IntegrityError``, ``OperationalError``,
...) and propagate unchanged, with the driver's error at ``.orig``; bad field
values raise pydantic's ``ValidationError``.
"""

from __future__ import annotations

__all__ = [
    "ARError",
    "CommandError",
    "ConfigurationError",
    "ConnectionModeError",
    "ConnectionNotFound",
    "ContextNotShared",
    "CrossConnectionError",
    "InDoubtError",
    "MigrationError",
    "PoolExhausted",
    "QueryError",
    "ReadOnlyError",
    "RecordNotFound",
    "ReplicaUnavailableWarning",
    "SavepointError",
    "ShardError",
    "StaleObjectError",
    "TwoPhaseAborted",
    "TwoPhaseNotSupported",
    "UnknownColumnError",
    "UnknownTenant",
    "ValueNotStorable",
    "describe_error",
]


class ARError(Exception):
    """Root of every error rhosocial_ar raises itself."""


class ConfigurationError(ARError):
    """A connection config or a model declaration is invalid."""


class ConnectionNotFound(ARError, LookupError):
    """No connection is configured under the requested name."""


class ConnectionModeError(ARError):
    """A sync call on an async connection, or an awaitable on a sync one; the message names the right call.

    Also a relation that is not loaded, touched in async code (docs/async.md).
    """


class UnknownTenant(ConnectionNotFound):
    """``tenant(id)`` named a tenant the registered resolver does not know; nothing was sent."""


class RecordNotFound(ARError, LookupError):
    """``find`` was asked for a primary key that matches no row."""


class UnknownColumnError(ARError, ValueError):
    """A column name given as a string is not a column of the table."""


class ReadOnlyError(ARError):
    """A write was attempted through a connection configured ``read_only``."""


class ContextNotShared(ARError):
    """A block was entered or closed in a copy of a context the rest of its work never sees.

    A web framework's worker thread without a request scope, e.g. a ``def`` FastAPI
    dependency without ``RequestScopeMiddleware`` (docs/web-frameworks.md).
    """


class CrossConnectionError(ARError):
    """An operation would need one SQL statement to span two connections."""


class StaleObjectError(ARError):
    """An optimistic-locking save found the row changed by someone else."""


class TwoPhaseNotSupported(ARError):
    """A connection cannot take part in a two-phase commit."""


class InDoubtError(ARError):
    """A two-phase commit failed after its commit decision was logged."""

    def __init__(self, message: str, xid: str) -> None:
        super().__init__(message)
        self.xid = xid


class MigrationError(ARError):
    """A migration command cannot run: no migrations yet, an unknown revision, a database behind."""


class QueryError(ARError, ValueError):
    """A query was built or used in a way that cannot work."""


class SavepointError(ARError):
    """A named savepoint cannot be set, rolled back to or released (bad, taken or unknown name)."""


class ShardError(ARError):
    """A query over several shards failed on one of them; ``shard`` names it, ``failures``
    maps every failed shard to its error (the database's, also at ``__cause__``)."""

    def __init__(self, message: str, shard: str, failures: dict[str, BaseException]) -> None:
        super().__init__(message)
        self.shard = shard
        self.failures = failures


class ReplicaUnavailableWarning(UserWarning):
    """A read meant for a replica went to the primary because the replica failed."""


class TwoPhaseAborted(ARError):
    """A coordinated transaction was rolled back because recovery had decided abort."""


class PoolExhausted(ARError):
    """No pooled connection came free within ``pool_timeout``; the message gives the settings."""


class CommandError(ARError):
    """A ``rhosocial-ar`` command cannot go on for a reason the user can fix; the message says which."""


def describe_error(exc: BaseException) -> str:
    """One readable line for an error: the driver's message for database errors."""
    if isinstance(exc, CommandError):
        text = str(exc)
    else:
        orig = getattr(exc, "orig", None)   # SQLAlchemy DBAPIError: the driver's error
        shown = orig if isinstance(orig, BaseException) else exc
        text = f"{type(shown).__name__}: {shown}"
    return " ".join(text.split())


class ValueNotStorable(ARError, ValueError):
    """A value does not fit its column (too long, out of range, too many digits); nothing was written."""
