"""The benchmark of issues 6 and 17: rhosocial_ar beside the raw driver, SQLAlchemy Core/ORM, peewee.

    python -m bench                          # SQLite, 5 repetitions, a table of medians
    python -m bench --db sqlite,postgresql,mysql --markdown bench/RESULTS.md

Modules: ``run`` (command line, processes, interleaving), ``child`` (one
implementation in one process), ``workloads`` (sizes, data, checks and the
targets), ``schema`` (tables and data), ``targets`` (SQLite) and
``servers`` (PostgreSQL, MariaDB/MySQL), ``counting`` (statements at the
DB-API level), ``impls`` (one module per implementation), ``report``
(tables and verdicts), ``machine`` (CPU and versions).
"""
