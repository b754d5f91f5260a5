"""The Alembic environment of every connection, written by ``rhosocial-ar db init``.

``rhosocial-ar db ... -c NAME`` (or ``rhosocial_ar.migrate``) runs it for one
connection at a time: that connection's engine, the tables of its models,
its chain in ``NAME/versions/`` and its version table ``alembic_version_NAME``.
Keyword arguments to ``run_environment`` go to Alembic's ``context.configure()``,
e.g. ``run_environment(compare_server_default=True)``.
"""

from rhosocial_ar.migrate import run_environment

run_environment()
