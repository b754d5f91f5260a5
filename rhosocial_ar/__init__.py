"""rhosocial_ar: an ActiveRecord layer over SQLAlchemy Core, across many databases.

    from rhosocial_ar import ActiveRecord, ConnectionManager, IntegerPKMixin

    ConnectionManager.configure('default', {'driver': 'sqlite', 'database': 'app.db'})

    class User(IntegerPKMixin, ActiveRecord):
        username: str

    User.create_table()
    User.create(username='ann')
    User.where(username='ann').first()
"""

# the release; pyproject.toml reads it from here (CHANGELOG.md says what changed)
__version__ = "0.1.0"

from .connections import Connection, ConnectionManager, get_connection
from .errors import (
    ARError,
    CommandError,
    ConfigurationError,
    ConnectionModeError,
    ConnectionNotFound,
    ContextNotShared,
    CrossConnectionError,
    InDoubtError,
    MigrationError,
    PoolExhausted,
    QueryError,
    ReadOnlyError,
    RecordNotFound,
    ReplicaUnavailableWarning,
    SavepointError,
    ShardError,
    StaleObjectError,
    TwoPhaseAborted,
    TwoPhaseNotSupported,
    UnknownColumnError,
    UnknownTenant,
    ValueNotStorable,
)
from .fanout import partial_results
from .mixins import IntegerPKMixin, OptimisticLockMixin, SoftDeleteMixin, TimestampMixin
from .model import ActiveRecord
from .query import Query
from .rebalance import RebalanceReport, rebalance
from .recovery import RecoveryReport, arecover, recover
from .relation import BelongsTo, HasMany, HasOne
from .schema import Field
from .scope import request_scope
from .sharding import shard_of, shard_ranges
from .tenants import TenantModel, register_tenant_schemas, register_tenants, tenant
from .transaction import Transaction
from .transfer import TransferResult, atransfer, transfer
from .twophase import two_phase
from .web import RequestScopeMiddleware

__all__ = [
    "ARError",
    "ActiveRecord",
    "BelongsTo",
    "CommandError",
    "ConfigurationError",
    "Connection",
    "ConnectionManager",
    "ConnectionModeError",
    "ConnectionNotFound",
    "ContextNotShared",
    "CrossConnectionError",
    "Field",
    "HasMany",
    "HasOne",
    "InDoubtError",
    "IntegerPKMixin",
    "MigrationError",
    "OptimisticLockMixin",
    "PoolExhausted",
    "Query",
    "QueryError",
    "RebalanceReport",
    "ReadOnlyError",
    "RecordNotFound",
    "ReplicaUnavailableWarning",
    "SavepointError",
    "ShardError",
    "RequestScopeMiddleware",
    "SoftDeleteMixin",
    "StaleObjectError",
    "TenantModel",
    "TimestampMixin",
    "Transaction",
    "RecoveryReport",
    "TransferResult",
    "TwoPhaseAborted",
    "TwoPhaseNotSupported",
    "UnknownColumnError",
    "UnknownTenant",
    "ValueNotStorable",
    "arecover",
    "atransfer",
    "get_connection",
    "partial_results",
    "rebalance",
    "recover",
    "register_tenant_schemas",
    "register_tenants",
    "request_scope",
    "shard_of",
    "shard_ranges",
    "tenant",
    "transfer",
    "two_phase",
]
