"""What a delivery run stops using, and why: a provider that refused our account, a sender it
says cannot send, or a provider in an outage (the circuit breaker).

An account error is not any message's fault, and an outage is nobody's: messages that would
go to a halted provider or sender are not claimed again in this run, and those already claimed
but not started are released with their attempt unused, so neither burns every message's tries.
"""

import threading
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Q

from messaging.models import Channel, ScheduledMessage

PROVIDER_NAMES = {Channel.SMS: "SMS", Channel.EMAIL: "email"}


def sender_of(message: ScheduledMessage) -> str:
    """The number an SMS goes out from: the client's own, else the platform's."""
    return (message.client.sms_from_number if message.client else "") or settings.TWILIO_FROM_NUMBER


@dataclass
class Halts:
    channels: dict[str, str] = field(default_factory=dict)  # channel -> why it stopped
    senders: dict[str, str] = field(default_factory=dict)  # SMS sender -> why it stopped
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def halt_channel(self, channel: str, reason: str) -> bool:
        """Stop using a channel's provider; False when it was stopped already."""
        with self._lock:
            if channel in self.channels:
                return False
            self.channels[channel] = reason
            return True

    def halt_sender(self, sender: str, reason: str) -> bool:
        with self._lock:
            if sender in self.senders:
                return False
            self.senders[sender] = reason
            return True

    def blocks(self, message: ScheduledMessage) -> bool:
        if message.channel in self.channels:
            return True
        return message.channel == Channel.SMS and bool(self.senders) and sender_of(message) in self.senders

    def exclusion(self) -> Q | None:
        """The messages a claim must leave out, as a filter; None when nothing is halted."""
        with self._lock:
            channels, senders = list(self.channels), set(self.senders)
        condition = Q(channel__in=channels) if channels else Q()
        if senders:
            by_sender = Q(client__sms_from_number__in=senders)
            if settings.TWILIO_FROM_NUMBER in senders:
                by_sender |= Q(client__isnull=True) | Q(client__sms_from_number="")
            condition |= Q(channel=Channel.SMS) & by_sender
        return condition if condition else None


@dataclass
class Breaker:
    """Consecutive transient failures per channel in this run; trips at `threshold`."""

    threshold: int
    _streaks: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def failure(self, channel: str) -> bool:
        """Count a transient failure; True exactly when this one trips the breaker."""
        with self._lock:
            self._streaks[channel] = self._streaks.get(channel, 0) + 1
            return self.threshold > 0 and self._streaks[channel] == self.threshold

    def success(self, channel: str) -> None:
        with self._lock:
            self._streaks[channel] = 0
