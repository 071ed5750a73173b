"""Messaging's jobs: delivery of the queue, and (in business_jobs) the jobs users buy it for."""

from messaging import business_jobs  # noqa: F401  (registers its jobs on import)
