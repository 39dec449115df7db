"""The store: every SQL statement of poller, and the tables that are its SQL interface.

Modules: ``schema`` (the tables, on one ``Base``), ``database`` (engines, the error boundary,
read-only transactions), ``migrate`` (Alembic from code), ``bootstrap`` (opening the database
for a command: the SQLite lock, migrations, stale leases), ``gateway`` (``Store``: the
awaitable face the running poller holds), ``recorder`` with ``batch``, ``writes``,
``diff`` and ``rows`` (the only writer of history, its pure planning core and its row values),
``targets`` (sync, claim, release, count), ``watchlist`` (targets from ``poller watch`` and
discovery), ``fleet`` (daemons sharing a database), ``snapshots`` (what list polling compares
with), ``reports`` (the queries behind ``poller report``), ``retention`` (pruning), ``demo``
(what ``poller demo`` reads while the daemon writes).
"""
