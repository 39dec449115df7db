"""The composition root: every collaborator is built here, once, from one ``Config``.

::

    Config + credentials ─▶ App ─┬▶ Store     the database (engine, recorder), opened once
                                 ├▶ Accounts  per account: client, pacing gate, list planner
                                 ├▶ Poller    accounts + store + tick settings
                                 └▶ Daemon    app + store (``poller run``)

Commands and tests ask an :class:`App` for what they need; nothing else builds clients,
gates, planners or pollers. A reload (SIGHUP) builds a new ``App`` for the new config with the
same seams (:meth:`App.reconfigured`) and asks it for new ``Accounts``, carrying over every
account the change did not touch (``poller.polling.accounts``); if building fails, the running
set is kept whole.

The seams are the constructor's keyword arguments: ``transport`` (one httpx transport for every
client: ``httpx.ASGITransport`` over the simulator, ``httpx.MockTransport``; default: the real
network), ``clock`` and ``sleep`` (a virtual clock in tests), and ``metrics`` (told every
response, poll and wait; one per daemon, shared by the apps a reload builds).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from typing import Any

import httpx
from sqlalchemy import Engine

from poller.config import Account, BandwidthAccount, Config, Credentials
from poller.daemon.metrics import PollerMetrics
from poller.daemon.service import ConfigLoader, Daemon
from poller.errors import ConfigError, StoreDown
from poller.model import utc_now
from poller.polling.accounts import Accounts, PolledAccount
from poller.polling.internal import InternalErrors
from poller.polling.lists import ListPlanner
from poller.polling.pacing import AccountGate, Clock, Sleep, TokenBucket
from poller.polling.poller import Poller, TickSettings
from poller.providers import ProviderClient, build_client
from poller.providers.http import HttpSettings
from poller.store.bootstrap import exclusive_sqlite, open_database, prepare
from poller.store.database import make_engine
from poller.store.gateway import Store
from poller.store.recorder import Recorder
from poller.store.spool import Spool, open_spool

log = logging.getLogger(__name__)


class App:
    """Builds the collaborators of one configuration (see the module docstring)."""

    def __init__(self, config: Config, credentials: Mapping[str, Credentials], *,
                 transport: httpx.AsyncBaseTransport | None = None, clock: Clock = utc_now,
                 sleep: Sleep = asyncio.sleep, metrics: PollerMetrics | None = None,
                 internal: InternalErrors | None = None) -> None:
        self.config = config
        self.credentials = dict(credentials)
        self.transport = transport
        self.clock = clock
        self.sleep = sleep
        self.metrics = metrics
        """Told every HTTP response, poll and token wait (``None``: not measured)."""
        self.internal = internal if internal is not None else InternalErrors(metrics)
        """Where our own bugs are logged once and counted (shared by the apps a reload
        builds, so a bug is not logged again after every reload)."""

    def reconfigured(self, config: Config, credentials: Mapping[str, Credentials]) -> App:
        """An app for a reloaded configuration, with the same seams and metrics."""
        return App(config, credentials, transport=self.transport, clock=self.clock,
                   sleep=self.sleep, metrics=self.metrics, internal=self.internal)

    # -- the store ---------------------------------------------------------------------------

    @contextmanager
    def open_store(self, *, recorder: Recorder | None = None,
                   even_if_down: bool = False) -> Iterator[Store]:
        """The configured database for a poller of this process, for the block.

        A SQLite file is locked for the block (``AlreadyRunning`` if another poller holds it),
        migrated if ``auto_migrate`` allows, and freed of the leases a killed poller left; any
        other database must be at head (``poller.store.bootstrap``). A database that does not
        answer raises ``StoreDown``, unless ``even_if_down`` (``poller run``): the store is
        then handed out unopened, and opens itself once the database answers
        (``poller.store.gateway``).
        """
        settings = self.config.database
        with exclusive_sqlite(settings) as lock:
            exclusive = lock is not None
            opening = None
            try:
                engine = open_database(settings, exclusive=exclusive)
            except StoreDown as error:
                if not even_if_down:
                    raise
                log.error("the database does not answer (%s): polling the configured "
                          "conferences into the spool until it does", error)
                engine = make_engine(settings.url)
                opening = partial(prepare, settings, engine, exclusive=exclusive)
            try:
                yield self.store(engine, recorder=recorder, opening=opening)
            finally:
                engine.dispose()

    def store(self, engine: Engine, *, recorder: Recorder | None = None,
              opening: Callable[[], None] | None = None) -> Store:
        """A :class:`Store` over ``engine`` (tests open their own databases); ``opening``: the
        steps still to run before it is used (:class:`~poller.store.gateway.Store`)."""
        return Store(engine, recorder=recorder, clock=self.clock, opening=opening)

    # -- accounts ----------------------------------------------------------------------------

    def accounts(self, store: Store, *, previous: Accounts | None = None) -> Accounts:
        """Every configured account with its client, gate and list planner.

        Accounts of ``previous`` (the running set, on reload) that this configuration would
        build alike are carried over with their client, gate and cached listings. Raises
        ``ConfigError`` when a client cannot be built (nothing of ``previous`` is touched).
        """
        built: list[PolledAccount] = []
        for settings in self.config.accounts:
            old = previous.get(settings.name) if previous is not None else None
            if old is not None and self._builds_alike(old, settings):
                built.append(replace(old, settings=settings))
                continue
            try:
                built.append(self._account(settings, store))
            except ConfigError:
                raise
            except Exception as error:  # a bug: the other accounts are still polled
                self.internal.report("client", error, f"building the client of account "
                                                      f"{settings.name!r} (not polled)")
        return Accounts(built)

    def _account(self, settings: Account, store: Store) -> PolledAccount:
        client = self.client(settings)
        planner = (ListPlanner(client, store, self.clock,
                               max_age_seconds=self.config.polling.interval_seconds / 2)
                   if settings.uses_list_polling else None)
        gate = AccountGate(TokenBucket(settings.requests_per_second, self.clock()))
        return PolledAccount(settings, client, gate, planner, polling=self.config.polling,
                             credentials=self.credentials[settings.name])

    def _builds_alike(self, old: PolledAccount, settings: Account) -> bool:
        """Whether ``old`` is what this configuration builds for ``settings``: the conference
        list does not shape the client; everything else (URLs, rates, auth, ``[polling]``,
        the credentials) does."""
        return (old.polling == self.config.polling
                and old.credentials == self.credentials.get(settings.name)
                and old.settings.model_copy(update={"conferences": ()})
                == settings.model_copy(update={"conferences": ()}))

    def client(self, settings: Account) -> ProviderClient:
        """A provider client for one configured account (``poller.providers.build_client``)."""
        return build_client(
            settings.kind,
            account=settings.name,
            credentials=self.credentials[settings.name],
            base_url=settings.base_url,
            account_id=settings.account_id if isinstance(settings, BandwidthAccount) else None,
            settings=HttpSettings.for_polling(self.config.polling),
            transport=self.transport,
            clock=self.clock,
            observer=self.metrics,
        )

    # -- poller and daemon -------------------------------------------------------------------

    def poller(self, store: Store, accounts: Accounts | None = None, *,
               rng: random.Random | None = None, **settings: Any) -> Poller:
        """A poller over ``accounts`` (default: new ones) and ``store``; keyword arguments are
        :class:`~poller.polling.poller.TickSettings` fields (``owner``, ``lease_seconds``,
        ``batch_size``, ``max_rate_wait_seconds``, …)."""
        return Poller(accounts if accounts is not None else self.accounts(store), store,
                      TickSettings(self.config.polling, **settings), clock=self.clock,
                      sleep=self.sleep, rng=rng, observer=self.metrics, internal=self.internal)

    def daemon(self, store: Store, load: ConfigLoader, spool: Spool | None = None) -> Daemon:
        """The ``poller run`` daemon on ``store``; ``load`` reads the config again on SIGHUP;
        results wait in ``spool`` while the store is away (default: ``[spool]``'s).

        A daemon always measures: an app made without ``metrics`` gets its own now, before the
        daemon builds its poller and accounts."""
        if self.metrics is None:
            self.metrics = self.internal.observer = PollerMetrics(clock=self.clock)
        if spool is None:
            settings = self.config.spool
            spool = open_spool(settings.directory(self.config.database),
                               max_bytes=settings.max_bytes)
        return Daemon(self, store, load, spool)
