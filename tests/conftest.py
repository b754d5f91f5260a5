"""Test backends: every test that takes ``db`` runs on SQLite, PostgreSQL and MariaDB.

Server URLs come from RHOSOCIAL_AR_PG_URL / RHOSOCIAL_AR_MYSQL_URL (and *_URL2
for a second database). An unreachable server skips its tests loudly on a
laptop and fails them under CI=true.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa

from rhosocial_ar import ConnectionManager

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

SERVER_URLS = {
    "postgresql": (
        os.environ.get("RHOSOCIAL_AR_PG_URL", "postgresql+psycopg2://root@127.0.0.1:5432/rhosocial_ar_test"),
        os.environ.get("RHOSOCIAL_AR_PG_URL2", "postgresql+psycopg2://root@127.0.0.1:5432/rhosocial_ar_test2"),
    ),
    "mysql": (
        os.environ.get("RHOSOCIAL_AR_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/rhosocial_ar_test"),
        os.environ.get("RHOSOCIAL_AR_MYSQL_URL2", "mysql+pymysql://root@127.0.0.1:3306/rhosocial_ar_test2"),
    ),
}
BACKENDS = ["sqlite", "postgresql", "mysql"]
# the backends this run tests (--backends): the version matrix of .ci/run runs SQLite alone
SELECTED_BACKENDS = list(BACKENDS)

_server_state: dict[str, str | None] = {}
_session_lock: list[Any] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    """Two test runs on one machine share the server databases: take turns."""
    handle = open(os.path.join(tempfile.gettempdir(), "rhosocial_ar_tests.lock"), "w")  # noqa: SIM115
    fcntl.flock(handle, fcntl.LOCK_EX)
    _session_lock.append(handle)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    while _session_lock:
        _session_lock.pop().close()   # closing releases the lock


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", default=False,
                     help="also run the long load tests (marker soak); so does RHOSOCIAL_AR_SOAK_SECONDS=N")
    parser.addoption("--backends", default=",".join(BACKENDS), metavar="NAMES",
                     help="comma-separated backends to test (default: all three); the tests of the "
                          "others are deselected, or skipped when they ask for a server themselves")


def pytest_configure(config: pytest.Config) -> None:
    names = [n.strip() for n in config.getoption("--backends").split(",") if n.strip()]
    unknown = sorted(set(names) - set(BACKENDS))
    if unknown or not names:
        raise pytest.UsageError(f"--backends: expected some of {', '.join(BACKENDS)}, got {unknown or names}")
    SELECTED_BACKENDS[:] = names


@pytest.fixture(autouse=True)
def _soak_opt_in(request: pytest.FixtureRequest) -> None:
    """Tests marked ``soak`` take minutes: they run only when asked for."""
    if request.node.get_closest_marker("soak") and not (
            request.config.getoption("--soak") or os.environ.get("RHOSOCIAL_AR_SOAK_SECONDS")):
        pytest.skip("soak test: run with --soak or RHOSOCIAL_AR_SOAK_SECONDS=N")


def _ensure_database(url: sa.URL) -> None:
    """Create the test database if the server has none of that name."""
    admin_db = "test" if url.get_backend_name() == "mysql" else "postgres"
    admin = sa.create_engine(url.set(database=admin_db), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if url.get_backend_name() == "mysql":
                conn.exec_driver_sql(f"CREATE DATABASE IF NOT EXISTS `{url.database}`")
            else:
                found = conn.exec_driver_sql(
                    "SELECT 1 FROM pg_database WHERE datname = %(n)s", {"n": url.database}
                ).first()
                if not found:
                    conn.exec_driver_sql(f'CREATE DATABASE "{url.database}"')
    finally:
        admin.dispose()


def server_problem(backend: str) -> str | None:
    """None when the backend's server is reachable (checked once per session)."""
    if backend == "sqlite":
        return None
    if backend not in _server_state:
        problem = None
        for raw in SERVER_URLS[backend]:
            url = sa.make_url(raw)
            try:
                _ensure_database(url)
                engine = sa.create_engine(url)
                with engine.connect() as conn:
                    conn.exec_driver_sql("SELECT 1")
                engine.dispose()
            except Exception as exc:  # any failure means "no server": reported below
                problem = f"{backend} at {url.render_as_string(hide_password=True)}: {exc}"
                break
        _server_state[backend] = problem
    return _server_state[backend]


def _missing(message: str) -> None:
    """Something a test needs is absent: fail under CI, skip loudly on a laptop."""
    if IN_CI:
        pytest.fail(message, pytrace=False)
    warnings.warn(message, stacklevel=3)
    pytest.skip(message)


def require_backend(backend: str) -> None:
    if backend not in SELECTED_BACKENDS:   # left out on purpose: not a missing server
        pytest.skip(f"{backend} not selected (--backends={','.join(SELECTED_BACKENDS)})")
    problem = server_problem(backend)
    if problem is not None:
        _missing(f"DATABASE SERVER UNREACHABLE, tests on it did not run: {problem}")


def require_standby() -> None:
    """A streaming standby of the PostgreSQL server can run here (else skip, or fail in CI)."""
    from tests.standby import standby_problem

    require_backend("postgresql")
    problem = standby_problem()
    if problem is not None:
        _missing(f"NO STREAMING STANDBY POSSIBLE, replica tests did not run: {problem}")


def _wipe(url: str | sa.URL) -> None:
    engine = sa.create_engine(url)
    try:
        metadata = sa.MetaData()
        metadata.reflect(engine)
        metadata.drop_all(engine)
    finally:
        engine.dispose()


@dataclass
class Backend:
    """The databases one test runs against."""

    name: str
    urls: tuple[str, str]

    def config(self, which: int = 0) -> dict[str, Any]:
        return {"url": self.urls[which]}

    @property
    def is_server(self) -> bool:
        return self.name != "sqlite"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``@pytest.mark.backends('postgresql', ...)``: no test for the other backends at all.

    Nor for the backends left out by ``--backends``.
    """
    kept, dropped = [], []
    for item in items:
        marker = item.get_closest_marker("backends")
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        name = params.get("backend", params.get("backend_name"))
        (dropped if name is not None and (name not in SELECTED_BACKENDS
                                          or (marker is not None and name not in marker.args))
         else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Backend]:
    """One of the three backends, with two empty databases."""
    name = request.param
    require_backend(name)
    if name == "sqlite":
        urls = (f"sqlite:///{tmp_path / 'one.db'}", f"sqlite:///{tmp_path / 'two.db'}")
    else:
        urls = SERVER_URLS[name]
        for url in urls:
            _wipe(url)
    yield Backend(name, urls)


@pytest.fixture
def db(backend: Backend) -> Iterator[Backend]:
    """``default`` and ``secondary`` connections configured on the backend."""
    ConnectionManager.reset()
    ConnectionManager.configure({"default": backend.config(0), "secondary": backend.config(1)})
    try:
        yield backend
    finally:
        ConnectionManager.reset()


def make_tables(*models: Any) -> None:
    """Create fresh tables for models on their own connections."""
    for model in models:
        model.drop_table()
        model.create_table()
