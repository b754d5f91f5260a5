"""``rhosocial-ar demo``: the Chinook music store split over two databases.

    $ rhosocial-ar demo                       # two SQLite files in ./demo_data
    $ rhosocial-ar demo --catalog-url postgresql+psycopg2://root@127.0.0.1/demo_catalog \\
                       --sales-url mysql+pymysql://root@127.0.0.1/demo_sales

The catalogue (artists, albums, genres, media types, tracks) lives on the
``catalog`` connection and the sales (customers, invoices, invoice lines) on
``sales``. Both ship with this package: the Chinook sample (``chinook/``, MIT
licence) and one Alembic chain per connection (``migrations/catalog/versions/``,
``migrations/sales/versions/``); ``rhosocial-ar db ... --app
rhosocial_ar.demo:migration_app --directory DIR`` works on those chains.

- ``models``: the demo's models, on 'catalog' and 'sales'
- ``databases``: the shipped files, the connections, the checks, migrations and loading
- ``shards``: the sharded step, the invoices split by customer over two more databases
- ``tour``: the tour of the API, ``run()``
"""

from .databases import find_chinook, migration_app, packaged
from .tour import run

__all__ = ["find_chinook", "migration_app", "packaged", "run"]
