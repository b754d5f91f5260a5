"""The user's document on cross-database relationships runs as written.

Its connection block names MySQL for 'default' and PostgreSQL for
'secondary' with placeholder credentials; those are pointed at the test
servers, everything else runs unchanged.
"""

from typing import Any

import pytest
import sqlalchemy as sa

from rhosocial_ar import ConnectionManager
from tests.conftest import SERVER_URLS, require_backend
from tests.seeds import SEEDS, python_blocks

SEED = "003_07bec64309441d9a.txt"


def _test_server(config: dict[str, Any]) -> dict[str, Any]:
    """Keep the seed's driver, use the test server's address."""
    backend = "mysql" if config["driver"] == "mysql" else "postgresql"
    url = sa.make_url(SERVER_URLS[backend][0 if backend == "mysql" else 1])
    return {**config, "host": url.host, "port": url.port, "database": url.database,
            "username": url.username, "password": url.password}


@pytest.fixture
def seed_namespace(monkeypatch):
    if not (SEEDS / SEED).exists():
        pytest.fail(f"seed document missing: {SEEDS / SEED}")
    require_backend("mysql")
    require_backend("postgresql")
    ConnectionManager.reset()
    real_configure = ConnectionManager.configure.__func__

    def configure(cls, name, config=None):
        if isinstance(name, dict):
            return real_configure(cls, {k: _test_server(v) for k, v in name.items()})
        return real_configure(cls, name, _test_server(config))

    monkeypatch.setattr(ConnectionManager, "configure", classmethod(configure))
    namespace: dict[str, Any] = {"__name__": "seed_003"}
    yield namespace
    ConnectionManager.reset()


def run(block: str, namespace: dict[str, Any], capsys) -> str:
    exec(compile(block, SEED, "exec"), namespace)
    return capsys.readouterr().out


def test_seed_runs_as_written(seed_namespace, capsys):
    ns = seed_namespace
    blocks = python_blocks(SEED)
    assert len(blocks) == 8
    run(blocks[0], ns, capsys)                      # connections
    assert ConnectionManager.get("default").dialect.name == "mysql"
    assert ConnectionManager.get("secondary").dialect.name == "postgresql"
    run(blocks[1], ns, capsys)                      # models
    User, Post = ns["User"], ns["Post"]
    for model in (User, Post):
        model.drop_table()
        model.create_table()
    example = User.create(username="example_user", email="e@x.io")
    for i in range(2):
        Post.create(user_id=example.id, title=f"Hello {i}", content="...")

    out = run(blocks[2], ns, capsys)                # basic usage
    assert "Post title: Hello 0" in out and "Author: example_user" in out
    run(blocks[3], ns, capsys)                      # creating related records
    assert Post.where(user_id=example.id).count() == 3

    out = run(blocks[4], ns, capsys)                # eager loading
    assert "User: example_user, Posts: 3" in out

    run(blocks[5], ns, capsys)                      # no cross-database transaction
    assert User.find(example.id).username == "new_username"
    assert Post.where(title="Updated Title").count() == 1

    run(blocks[6], ns, capsys)                      # repository pattern
    user = ns["UserRepository"].get_user_with_posts(example.id)
    assert user.username == "new_username" and len(user._posts) == 3

    run(blocks[7], ns, capsys)                      # read replicas (a declaration)
    assert ns["User"].__read_connection__ == "default_replica"
