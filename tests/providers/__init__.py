"""Tests of the provider layer (``poller.providers``)."""
