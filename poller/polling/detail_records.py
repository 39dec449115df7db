"""Fetching Telnyx participant detail records of completed conferences (a daemon job).

``DetailRecords().run(poller)`` asks the store which completed conferences of the accounts with
``detail_records = true`` are due (:mod:`poller.store.detail_records`), fetches each one's
records through the account's client, every request taking a token of the account's bucket
(``Pacer.pace``, as discovery does), and applies them; an empty answer (Telnyx has them only a
while after the end) or a failed request puts the conference off to a later run, backing off.
An account that is paused (429, auth) waits for its next run. ``poller run`` runs it every
``RUN_SECONDS``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from poller.config import TelnyxAccount
from poller.errors import ProviderError, RateLimited
from poller.providers import TelnyxClient

if TYPE_CHECKING:
    from poller.polling.poller import Poller

log = logging.getLogger(__name__)

RUN_SECONDS = 10.0
"""How often ``poller run`` looks for conferences due for their records."""


@dataclass(slots=True)
class RecordsReport:
    """What one run did."""

    applied: int = 0
    """Conferences whose records were applied."""
    filled: int = 0
    added: int = 0
    postponed: int = 0


class DetailRecords:
    """Runs the detail-record fetches (see the module docstring)."""

    async def run(self, poller: Poller) -> RecordsReport:
        """One pass over the conferences due now; raises ``StoreUnavailable`` when the store
        is away (the conferences stay due)."""
        report = RecordsReport()
        accounts = {polled.name: polled for polled in poller.accounts
                    if isinstance(polled.settings, TelnyxAccount)
                    and polled.settings.detail_records
                    and isinstance(polled.client, TelnyxClient)}
        if not accounts:
            return report
        now = poller.clock()
        for due in await poller.store.due_for_records(accounts, now):
            polled = accounts[due.account]
            if polled.gate.is_paused(poller.clock()):
                continue
            client = polled.client
            assert isinstance(client, TelnyxClient)
            try:
                records, warnings = await client.participant_records(
                    due.conference_id, pace=poller.pacer.pace(polled.gate, polled.provider))
            except ProviderError as error:
                if isinstance(error, RateLimited):
                    polled.gate.pause(poller.clock(), error.retry_after_seconds or 1.0,
                                      "rate_limited")
                log.warning("telnyx conference %s of account %r: detail records not fetched "
                            "(%s): %s; tried again later", due.conference_id, due.account,
                            error.kind, error)
                await poller.store.postpone_records(due, poller.clock())
                report.postponed += 1
                continue
            for warning in warnings:
                log.warning("telnyx conference %s of account %r: %s", due.conference_id,
                            due.account, warning)
            if not records:
                at = await poller.store.postpone_records(due, poller.clock())
                log.debug("telnyx conference %s: no detail records yet; next try at %s",
                          due.conference_id, at.isoformat())
                report.postponed += 1
                continue
            applied = await poller.store.apply_records(due.pk, records, poller.clock())
            report.applied += 1
            report.filled += applied.filled
            report.added += applied.added
            log.info("telnyx conference %s of account %r: %d participant detail records "
                     "applied (%d members' times made exact, %d stays no poll saw added, %d "
                     "already exact)", due.conference_id, due.account, len(records),
                     applied.filled, applied.added, applied.kept)
        return report
