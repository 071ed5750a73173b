"""Which allowances a message draws from, and what a delivery run does when a provider says
"too many requests".

SMS through Twilio: a message sent from a number draws from the account's allowance
(TWILIO_SEND_RATE) and, when TWILIO_SENDER_RATE is set, from that number's own; one sent
through the Messaging Service (TWILIO_MESSAGING_SERVICE_SID, when its client has no number of
its own) draws from the service's (TWILIO_MESSAGING_SERVICE_RATE). Email through Resend: the
team's allowance (RESEND_SEND_RATE; Resend counts per team, whatever the key). The console
providers are not paced.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter

from django.conf import settings

from messaging.delivery.providers.base import TransientError
from messaging.delivery.ratelimit import Bucket, Turn, bucket_for
from messaging.models import Channel, ScheduledMessage

# A 429 without Retry-After (or ratelimit-reset) pauses the allowance this long.
DEFAULT_PAUSE_SECONDS = 1.0
# A message refused with a 429 is sent again once the pause ends, without using an attempt
# (the provider did not process it); after this many 429s in a row it is an ordinary
# transient error.
MAX_RATE_LIMITED_TRIES = 3
RATE_LIMITED_CODES = {"20429", "rate_limit_exceeded"}
# A provider asking for a longer wait (a daily quota) pauses this long at a time, and the run
# says so (failed), so a stop that long is heard of rather than looking like a quiet run.
MAX_PAUSE_SECONDS = 300.0


def buckets_for(message: ScheduledMessage) -> list[Bucket]:
    if message.channel == Channel.SMS:
        names = _sms_allowances(message)
    elif str(settings.EMAIL_PROVIDER).lower() == "resend":
        # Named by a digest of the key, never the key itself.
        team = hashlib.sha256(str(settings.RESEND_API_KEY).encode()).hexdigest()[:16]
        names = [(f"resend:{team}", settings.RESEND_SEND_RATE)]
    else:
        names = []
    return [bucket for name, rate in names if (bucket := bucket_for(name, rate)) is not None]


def _sms_allowances(message: ScheduledMessage) -> list[tuple[str, float]]:
    if str(settings.SMS_PROVIDER).lower() != "twilio":
        return []
    # The narrower allowance first and the account's last: the account slot is then taken right
    # before the request, so waiting for a sender's slot never lands a request on top of the
    # account's pace. Messaging Service sends count against the account too (Twilio's limits
    # are per account).
    account = f"twilio:{settings.TWILIO_ACCOUNT_SID}"
    own = message.client.sms_from_number if message.client else ""
    service = settings.TWILIO_MESSAGING_SERVICE_SID
    if service and not own:
        return [(f"{account}:{service}", settings.TWILIO_MESSAGING_SERVICE_RATE), (account, settings.TWILIO_SEND_RATE)]
    sender = own or settings.TWILIO_FROM_NUMBER
    return [(f"{account}:{sender}", settings.TWILIO_SENDER_RATE), (account, settings.TWILIO_SEND_RATE)]


def pause_seconds(error: BaseException | None) -> float | None:
    """How long the provider asks everyone to wait, when `error` is its "too many requests"."""
    if not isinstance(error, TransientError):
        return None
    if error.http_status != 429 and error.code not in RATE_LIMITED_CODES:
        return None
    seconds = error.retry_after if error.retry_after is not None else DEFAULT_PAUSE_SECONDS
    return min(seconds, MAX_PAUSE_SECONDS)


class RunPacing:
    """What one delivery run learnt about its allowances: which channels it stopped claiming
    because no slot comes before the run must end, and how many 429s it saw."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.throttled: set[str] = set()  # channels with no send slot before the run ends
        self.counts: Counter = Counter()
        self.problems: list[str] = []  # what makes this run failed: a long pause, a broken limiter

    def turn(self, message: ScheduledMessage, until: float, stop: threading.Event) -> Turn:
        """This message's place in each of its allowances, to be taken by the provider call
        (see ratelimit.taking_turn)."""
        return Turn(buckets_for(message), until, stop)

    def refused(self, message: ScheduledMessage, turn: Turn) -> None:
        """No slot came in time: the message is released unsent, its attempt unused, and
        this run claims no more of its channel (unless the run was stopping anyway)."""
        if turn.stop is None or not turn.stop.is_set():
            with self._lock:
                self.throttled.add(message.channel)
                if turn.error is not None and len(self.problems) < 5:
                    self.problems.append(
                        f"the send allowance could not be read ({type(turn.error).__name__}: {turn.error}); "
                        f"{message.channel} messages released unsent"
                    )

    def rate_limited(self, message: ScheduledMessage, error: BaseException | None) -> bool:
        """Pause the message's allowances for everyone when `error` is a 429; True when the
        message may be sent again after the pause."""
        seconds = pause_seconds(error)
        buckets = buckets_for(message) if seconds is not None else []
        if not buckets:
            return False  # unpaced (rate 0): an ordinary transient error, retried later
        asked = getattr(error, "retry_after", None)
        with self._lock:
            self.counts["rate_limited"] += 1
            if asked is not None and asked > MAX_PAUSE_SECONDS and len(self.problems) < 5:
                self.problems.append(
                    f"the provider asked to wait {asked:.0f} s ({str(error)[:120]}): a quota? sending pauses "
                    f"{MAX_PAUSE_SECONDS:.0f} s at a time until it stops asking"
                )
        for bucket in buckets:
            bucket.pause(seconds, reason=str(error)[:200])
        return True

    def blocks(self, message: ScheduledMessage) -> bool:
        return message.channel in self.throttled

    def channels(self) -> list[str]:
        with self._lock:
            return list(self.throttled)
