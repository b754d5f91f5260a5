import logging

import pytest
import sqlalchemy as sa

from rhosocial_ar import (
    ARError,
    ConfigurationError,
    ConnectionManager,
    ConnectionNotFound,
    get_connection,
)


@pytest.fixture(autouse=True)
def _clean():
    ConnectionManager.reset()
    yield
    ConnectionManager.reset()


def test_configure_one_and_many(tmp_path):
    ConnectionManager.configure("primary", {"driver": "sqlite", "database": str(tmp_path / "a.db")})
    ConnectionManager.configure({
        "default": {"driver": "sqlite", "database": str(tmp_path / "b.db")},
        "pg": {"driver": "postgresql", "host": "127.0.0.1", "port": 5432, "database": "x",
               "username": "u", "password": "s3cret"},
        "my": {"driver": "mariadb", "host": "127.0.0.1", "database": "x"},
        "replica": {"url": "postgresql+psycopg2://u@10.0.0.2/analytics", "read_only": True},
    })
    assert ConnectionManager.names() == ["default", "my", "pg", "primary", "replica"]
    conn = get_connection("primary")
    assert conn.name == "primary" and conn.dialect.name == "sqlite"
    assert isinstance(conn.engine, sa.Engine)
    assert get_connection().name == "default"
    assert get_connection("pg").dialect.name == "postgresql"
    assert get_connection("my").dialect.name == "mysql"
    assert get_connection("replica").read_only is True
    assert get_connection("pg").engine.url.port == 5432


def test_existing_engine_is_adopted_and_not_disposed(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'legacy.db'}")
    ConnectionManager.configure("legacy", {"engine": engine})
    assert get_connection("legacy").engine is engine
    ConnectionManager.reset()
    with engine.connect() as conn:  # still usable: we did not own it
        assert conn.exec_driver_sql("select 1").scalar() == 1


def test_pool_options_reach_the_engine():
    ConnectionManager.configure("pg", {
        "url": "postgresql+psycopg2://root@127.0.0.1/test",
        "pool_size": 3, "max_overflow": 1, "pool_timeout": 2, "pool_recycle": 60,
        "pool_pre_ping": True, "echo": False, "connect_args": {"connect_timeout": 2},
    })
    pool = get_connection("pg").engine.pool
    assert pool.size() == 3 and pool._max_overflow == 1 and pool._timeout == 2
    assert pool._recycle == 60 and pool._pre_ping is True


def test_configure_replaces_existing_name(tmp_path):
    ConnectionManager.configure("x", {"driver": "sqlite", "database": str(tmp_path / "1.db")})
    ConnectionManager.configure("x", {"driver": "sqlite", "database": str(tmp_path / "2.db")})
    assert get_connection("x").engine.url.database.endswith("2.db")


def test_unknown_connection_lists_configured_names(tmp_path):
    ConnectionManager.configure("alpha", {"driver": "sqlite", "database": str(tmp_path / "a.db")})
    with pytest.raises(ConnectionNotFound, match=r"'nope'.*alpha"):
        get_connection("nope")
    assert issubclass(ConnectionNotFound, ARError)


@pytest.mark.parametrize("config, key", [
    ({"driver": "oracle", "database": "x"}, "driver"),
    ({"driver": "postgresql", "host": "h"}, "database"),
    ({"driver": "sqlite"}, "database"),
    ({"database": "x"}, "driver"),
    ({"driver": "sqlite", "database": "x", "pool_sise": 3}, "pool_sise"),
    ({"url": "postgresql://u@h/db", "host": "other"}, "host"),
    ({"url": "not a url"}, "url"),
    ({"engine": "not an engine"}, "engine"),
    ({"driver": "postgresql", "database": "x", "port": "abc"}, "port"),
    ({"url": "postgresql+psycopg2://u@h/d", "pool_size": "big"}, "pool_size"),
    ({"url": "postgresql+psycopg2://u@h/d", "pool_pre_ping": "yes"}, "pool_pre_ping"),
    ({"url": "postgresql+psycopg2://u@h/d", "connect_args": 5}, "connect_args"),
])
def test_bad_config_names_the_key(config, key):
    with pytest.raises(ConfigurationError, match=repr(key)):
        ConnectionManager.configure("bad", config)
    assert "bad" not in ConnectionManager.names()


def test_bad_config_in_a_batch_registers_none():
    with pytest.raises(ConfigurationError):
        ConnectionManager.configure({
            "good": {"driver": "sqlite", "database": ":memory:"},
            "bad": {"driver": "nosuch", "database": "x"},
        })
    assert ConnectionManager.names() == []


def test_password_never_shown(caplog):
    caplog.set_level(logging.DEBUG)
    ConnectionManager.configure("pg", {
        "driver": "postgresql", "host": "127.0.0.1", "port": 1, "database": "x",
        "username": "u", "password": "hunter2-secret", "connect_args": {"connect_timeout": 1},
    })
    conn = get_connection("pg")
    assert "hunter2-secret" not in repr(conn)
    assert "hunter2-secret" not in str(conn.engine.url)
    with pytest.raises(ConfigurationError) as info:
        ConnectionManager.configure("pg2", {"url": "postgresql://u:hunter2-secret@h/db",
                                            "pool_size": "x"})
    assert "hunter2-secret" not in str(info.value)
    with pytest.raises(ConfigurationError) as info:
        ConnectionManager.configure("pg3", {"url": "postgresql://u:hunter2-secret@h:port/db"})
    assert "hunter2-secret" not in str(info.value)
    with pytest.raises(sa.exc.OperationalError) as failed:  # port 1: nothing listens
        with conn.engine.connect():
            pass
    assert "hunter2-secret" not in str(failed.value)
    assert "hunter2-secret" not in caplog.text


def test_reset_forgets_everything(tmp_path):
    ConnectionManager.configure("a", {"driver": "sqlite", "database": str(tmp_path / "a.db")})
    ConnectionManager.reset()
    with pytest.raises(ConnectionNotFound):
        get_connection("a")
