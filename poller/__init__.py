"""poller keeps a durable SQL history of Telnyx and Bandwidth voice conferences.

The package follows the flow of one poll (``docs/architecture.md`` draws it):

* ``config``: ``config.toml`` and the environment into one frozen ``Config``;
* ``app``: the composition root, building every collaborator from a ``Config``;
* ``polling``: a tick claims due targets, paces and fetches them, decides when to poll next;
* ``providers``: the Telnyx and Bandwidth clients over httpx, and their pure parsers;
* ``model``: what one poll saw (``Observation``) or why it failed (``PollFailure``);
* ``store``: every SQL statement: the recorder (the only writer of history), targets, fleet,
  reports, migrations;
* ``daemon``: ``poller run`` around the poller: clock, signals, reload, heartbeat, metrics;
* ``commands`` and ``cli``: the ``poller`` command line;
* ``simulator``: a spec-faithful fake of both providers, for tests and demos.

``errors`` holds the one exception tree.
"""
