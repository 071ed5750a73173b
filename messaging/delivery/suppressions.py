"""The email suppression list: addresses that hard-bounced or complained (marked us as spam).

Resend reports the bounce or complaint (`messaging.delivery.reports`); the address goes on the
list here, and from then on an email to it fails as suppressed at claim time, without a
provider call: sending again to an address that does not exist, or to someone who called us
spam, hurts the sender's reputation for every other recipient. An operator who knows the
address works again deletes its row in the admin (Messaging > Email suppressions).

Only permanent bounces suppress: a transient one (mailbox full, greylisting) or an
undetermined one may go through next time, and suppressing it would silently stop mail that
would have arrived.
"""

import logging
from collections.abc import Iterable

from messaging.models import EmailSuppression, ScheduledMessage, Status

logger = logging.getLogger("messaging.delivery.suppressions")

# The last_error_code (and DeliveryAttempt.error_code) of an email failed because its address
# is suppressed.
SUPPRESSED_CODE = "suppressed"
SUPPRESSED_ERROR = "the address is on the email suppression list (it bounced or complained); not sent"


def normalize_address(address: object) -> str:
    """The form addresses are stored and compared in (schedule_message lower-cases too)."""
    return str(address or "").strip().lower()


def suppressed_emails(addresses: Iterable[str]) -> set[str]:
    """Those of `addresses` (as given) that are suppressed, in one query; none for no input."""
    given = {address: normalize_address(address) for address in addresses}
    if not given:
        return set()
    found = set(EmailSuppression.objects.filter(email__in=set(given.values())).values_list("email", flat=True))
    return {address for address, normal in given.items() if normal in found}


def suppress_emails(
    addresses: Iterable[str], reason: str, *, detail: str = "", provider_message_id: str = ""
) -> list[str]:
    """Put the addresses on the list (one insert); the normalised addresses it was asked for.

    An address already there keeps its first row (its reason and date say when it started).
    """
    emails = sorted({a for a in map(normalize_address, addresses) if a and len(a) <= 254})
    if not emails:
        return []
    EmailSuppression.objects.bulk_create(
        [
            EmailSuppression(email=email, reason=reason, detail=detail[:2000], provider_message_id=provider_message_id)
            for email in emails
        ],
        ignore_conflicts=True,
    )
    logger.warning(
        "email_suppressed", extra={"reason": reason, "provider_message_id": provider_message_id, "count": len(emails)}
    )
    return emails


def suppression_of(message: ScheduledMessage) -> EmailSuppression | None:
    """The suppression a message failed on, for its page; None if it did not fail on one or an
    operator has removed it since."""
    if message.status != Status.FAILED or message.last_error_code != SUPPRESSED_CODE:
        return None
    return EmailSuppression.objects.filter(email=normalize_address(message.to)).first()
