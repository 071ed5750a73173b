"""Send allowances shared by every process on every host (PostgreSQL only)."""

from django.db import models
from django.utils.timezone import now as utc_now


class RateBucket(models.Model):
    """One provider allowance (a Twilio account, a sender, a Messaging Service, a Resend team).

    `next_slot` is the earliest time the next request may go (a generic cell rate algorithm:
    each grant of n requests moves it n / rate seconds on), always on the database's clock so
    hosts whose clocks disagree still share one pace. A provider's 429 moves it to the end of
    the pause for everyone; `paused_until` and `pause_reason` only tell an operator why.
    """

    name = models.CharField(max_length=200, primary_key=True)  # "twilio:AC...", "resend:<key hash>"
    next_slot = models.DateTimeField(default=utc_now)
    paused_until = models.DateTimeField(null=True, blank=True)
    pause_reason = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(default=utc_now)

    # One row per allowance, read and written by primary key only: no other index.

    def __str__(self) -> str:
        return self.name
