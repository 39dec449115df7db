"""Polling: one tick claims the due targets, paces and fetches them, and decides what is next.

Modules: ``poller`` (:class:`~poller.polling.poller.Poller`: the tick, a burst, the daemon's
run of ticks), ``accounts`` (per account at run time: client, pacing gate, list planner),
``pacing`` (poll slots and each account's token bucket and pause, in one place), ``schedule``
(pure decisions: when to poll a target next, when to retire it), ``lists`` (list polling: a
conference list serving many targets), ``discovery`` (new conferences from the lists),
``report`` (what a tick reports, and the observer told as it goes).
"""
