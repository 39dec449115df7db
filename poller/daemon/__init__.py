"""The daemon: ``poller run`` as a long-running process around the poller.

Modules: ``service`` (:class:`~poller.daemon.service.Daemon`: the run loop, signals, reload,
shutdown), ``ticker`` (the APScheduler clock that starts ticks), ``membership`` (registration
and heartbeat among daemons sharing a database), ``reload`` (what a SIGHUP may change),
``signals`` (signals noted before the loop handles them), ``metrics`` (Prometheus),
``endpoints`` (``/metrics``, ``/healthz``, ``/readyz``), ``logs`` (text or JSON lines).

This package imports nothing at import time, so that ``poller.daemon.metrics`` can be used
without loading the daemon.
"""
