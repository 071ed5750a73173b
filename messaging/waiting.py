"""Why a message has not gone out (yet): one sentence for its page, a few words for the list.

The reasons mirror what claiming does with a message, asking the same rules: the opt-out
list, the email suppression list, the recipient's quiet hours (`claiming.quiet_until`, the
window claiming reads), the backoff time a transient error set, and the "held: " mark an
account or configuration error leaves.
"""

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from messaging.delivery.claiming import quiet_until
from messaging.delivery.suppressions import SUPPRESSED_CODE, suppressed_emails
from messaging.models import Channel, ScheduledMessage, Status
from messaging.optouts import opt_outs_for

HELD_PREFIX = "held: "  # the last_error of a message an account/configuration error holds
OPTED_OUT_CODES = {"opted_out", "21610"}  # claiming's code, Twilio's STOP error


@dataclass(frozen=True)
class Waiting:
    kind: str  # scheduled | quiet_hours | backoff | held | opted_out | suppressed | due | sending | checking
    text: str  # one sentence, for the message's page
    short: str  # a few words, for the queue list


def _utc(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _hhmm_utc(moment: datetime, now: datetime) -> str:
    """ "14:30 UTC" today, "03-11 14:30 UTC" another day: short enough for a table cell."""
    moment = moment.astimezone(UTC)
    return f"{moment:%H:%M} UTC" if moment.date() == now.astimezone(UTC).date() else f"{moment:%m-%d %H:%M} UTC"


def _error_name(message: ScheduledMessage) -> str:
    return message.last_error_code or "an error"


def why_waiting(
    message: ScheduledMessage, now: datetime, *, opted_out: bool | None = None, suppressed: bool | None = None
) -> Waiting | None:
    """Why `message` is not sent, or None when there is nothing to explain (sent, delivered,
    cancelled, or failed for a reason its error already states).

    `opted_out` / `suppressed` may be given by a caller that looked up a whole page at once
    (`why_waiting_many`); otherwise they are looked up here. A pending SMS to a lead needs
    `message.lead.client` (select_related) for its quiet hours.
    """
    if message.status == Status.SENDING:
        return _sending(message, now)
    if message.status == Status.FAILED:
        if message.channel == Channel.SMS and message.last_error_code in OPTED_OUT_CODES:
            return Waiting("opted_out", f"Not sent: {message.to} opted out of SMS.", "opted out")
        if message.last_error_code == SUPPRESSED_CODE:
            return Waiting("suppressed", f"Not sent: {message.to} is on the email suppression list.", "suppressed")
        return None
    if message.status != Status.PENDING:
        return None

    if message.last_error.startswith(HELD_PREFIX):
        problem = message.last_error[len(HELD_PREFIX) :]
        return Waiting(
            "held",
            f"Held because the provider is misconfigured ({problem}); it goes out on the first delivery "
            "run after that is fixed.",
            "held: provider misconfigured",
        )
    if message.channel == Channel.SMS:
        if opted_out is None:
            opted_out = opt_outs_for([message.to]).blocks(message.to, message.client_id)
        if opted_out:
            return Waiting(
                "opted_out",
                f"Will not be sent: {message.to} opted out of SMS; the next delivery run marks it failed.",
                "opted out",
            )
    if message.channel == Channel.EMAIL:
        if suppressed is None:
            suppressed = bool(suppressed_emails([message.to]))
        if suppressed:
            return Waiting(
                "suppressed",
                f"Will not be sent: {message.to} is on the email suppression list; the next delivery run "
                "marks it failed.",
                "suppressed",
            )
    if message.send_at > now:
        return Waiting(
            "scheduled",
            f"Scheduled for later: it goes out at {_utc(message.send_at)}.",
            f"scheduled for {_hhmm_utc(message.send_at, now)}",
        )
    opening = quiet_until(message, now)
    if opening is not None:
        zone = message.lead.tz
        local = opening.astimezone(ZoneInfo(zone))
        return Waiting(
            "quiet_hours",
            f"Waiting for the recipient's quiet hours to end: it goes out from {local:%H:%M} in {zone} "
            f"({_utc(opening)}).",
            f"quiet hours until {local:%H:%M} ({zone})",
        )
    if message.next_attempt_at > now:
        if message.last_error_code or message.last_error:
            return Waiting(
                "backoff",
                f"Backing off after error {_error_name(message)}: the next attempt is at "
                f"{_utc(message.next_attempt_at)} (attempt {message.attempts + 1} of {message.max_attempts}).",
                f"retry at {_hhmm_utc(message.next_attempt_at, now)} after {_error_name(message)}",
            )
        return Waiting(
            "scheduled",
            f"Waiting: the next attempt is at {_utc(message.next_attempt_at)}.",
            f"next attempt {_hhmm_utc(message.next_attempt_at, now)}",
        )
    return Waiting("due", "Due: it goes out on the next delivery run.", "due now")


def _sending(message: ScheduledMessage, now: datetime) -> Waiting:
    lease = message.lease_expires_at
    if message.last_error_code and lease is not None:
        # A send that may have gone out (a Twilio timeout): lease recovery asks Twilio.
        return Waiting(
            "checking",
            f"Unsure whether it went out after error {message.last_error_code}: after {_utc(lease)} the provider "
            "is asked, and it is marked sent or sent again.",
            f"checking after {message.last_error_code}",
        )
    until = f", lease until {_utc(lease)}" if lease is not None else ""
    return Waiting("sending", f"Being sent by {message.claimed_by or 'a worker'}{until}.", "being sent")


def why_waiting_many(messages: Iterable[ScheduledMessage], now: datetime) -> dict[uuid.UUID, Waiting]:
    """`why_waiting` for a page of messages, with one opt-out and one suppression query in all."""
    messages = list(messages)
    pending = [m for m in messages if m.status == Status.PENDING]
    opt_outs = opt_outs_for(m.to for m in pending if m.channel == Channel.SMS)
    suppressed = suppressed_emails(m.to for m in pending if m.channel == Channel.EMAIL)
    reasons = {}
    for message in messages:
        reason = why_waiting(
            message,
            now,
            opted_out=opt_outs.blocks(message.to, message.client_id),
            suppressed=message.to in suppressed,
        )
        if reason is not None:
            reasons[message.pk] = reason
    return reasons


def annotate_waiting(messages: Iterable[ScheduledMessage], now: datetime) -> list[ScheduledMessage]:
    """The messages as a list, each with `.waiting` (a Waiting or None) for a template."""
    messages = list(messages)
    reasons = why_waiting_many(messages, now)
    for message in messages:
        message.waiting = reasons.get(message.pk)
    return messages
