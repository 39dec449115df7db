"""Turning the recorded history into text, CSV, JSON and pictures (``docs/reports.md``)."""
