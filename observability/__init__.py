"""Prometheus metrics, derived from the database at scrape time (see docs/operations.md)."""
