"""A Django email backend that sends through the configured email provider (Resend/console).

Cron alerts use Django's mail API, so the scheduling app needs to know nothing of providers.
"""

import uuid
from collections.abc import Sequence

from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

from messaging.delivery.providers import get_email_provider
from messaging.delivery.providers.base import EmailPayload, ProviderError


class ProviderEmailBackend(BaseEmailBackend):
    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        provider = get_email_provider()
        sent = 0
        for message in email_messages:
            html = next((content for content, mime in getattr(message, "alternatives", []) if mime == "text/html"), "")
            for recipient in message.recipients():
                try:
                    provider.send_email(
                        EmailPayload(
                            to=recipient,
                            subject=message.subject,
                            html=html,
                            text=message.body,
                            idempotency_key=str(uuid.uuid4()),
                            from_email=message.from_email or None,
                        )
                    )
                except ProviderError:
                    if not self.fail_silently:
                        raise
                    continue
                sent += 1
        return sent
