"""Missed-call text-back, agent check, follow-ups: registered on import."""
