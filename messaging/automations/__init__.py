"""The business jobs built on the queue: missed-call text-back, agent check, follow-ups.

Domain functions here take `now` and plain arguments and return what they did; only
`messaging/jobs.py` adapts them to a run's context (counters, deadline, per-item isolation).
"""
