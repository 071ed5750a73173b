"""Development providers: print a one-line summary instead of sending.

Only recipients and sizes are printed, never content, so console output is
as safe to share as production logs.
"""

from __future__ import annotations

import sys
import uuid
from datetime import datetime

from .base import EmailPayload, EmailProvider, SendResult, SmsProvider


def _console_id() -> str:
    return f"console-{uuid.uuid4()}"


def _emit(line: str) -> None:
    # Written directly rather than logged so it shows under runserver and cron whatever the
    # LOGGING configuration; one write per line so lines from the delivery pool's threads
    # never interleave (print() writes the text and the newline separately).
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class ConsoleSmsProvider(SmsProvider):
    def send_sms(
        self,
        to: str,
        body: str,
        *,
        from_number: str | None = None,
        status_callback: str | None = None,
    ) -> SendResult:
        result = SendResult(provider_id=_console_id(), status="sent")
        _emit(f"[console sms] id={result.provider_id} to={to} from={from_number or '-'} length={len(body)}")
        return result

    def find_sent(self, to: str, since: datetime, from_number: str | None = None) -> list[SendResult]:
        # Nothing leaves the process, so there is nothing to reconcile.
        return []


class ConsoleEmailProvider(EmailProvider):
    def send_email(self, payload: EmailPayload) -> SendResult:
        result = SendResult(provider_id=_console_id(), status="sent")
        _emit(
            f"[console email] id={result.provider_id} to={payload.to} "
            f"subject_length={len(payload.subject)} html_length={len(payload.html)} "
            f"text_length={len(payload.text)}"
        )
        return result
