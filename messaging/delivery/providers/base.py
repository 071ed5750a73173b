"""Provider-neutral types: results, errors and the two provider interfaces.

Callers (the scheduler/worker) only see these types, so swapping Twilio for
another SMS vendor, or running with the console provider in development,
never touches scheduling code.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from urllib3.exceptions import NewConnectionError

DEFAULT_TIMEOUT_SECONDS = 10.0


@dataclass
class SendResult:
    provider_id: str
    status: str
    http_status: int | None = None
    raw: dict | None = None


@dataclass
class EmailPayload:
    to: str
    subject: str
    html: str
    text: str
    idempotency_key: str
    from_email: str | None = None


class ProviderError(Exception):
    """A send failed; subclasses tell the caller whether retrying can help."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status

    def __str__(self) -> str:
        parts = [self.message]
        if self.http_status is not None:
            parts.append(f"http_status={self.http_status}")
        if self.code is not None:
            parts.append(f"code={self.code}")
        return " ".join(parts)


class TransientError(ProviderError):
    """Retry later. `retry_after` is the provider's hint in seconds, if any.

    `may_have_sent` is True when the request may have reached the provider
    before failing (read timeout, dropped connection, 5xx). For SMS, which has
    no idempotency key, the caller should reconcile with `find_sent` before
    resending in that case.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        http_status: int | None = None,
        retry_after: float | None = None,
        may_have_sent: bool = False,
    ) -> None:
        super().__init__(message, code=code, http_status=http_status)
        self.retry_after = retry_after
        self.may_have_sent = may_have_sent


class PermanentError(ProviderError):
    """Retrying the same request cannot succeed (bad number, opted out, ...)."""


class AccountError(ProviderError):
    """Nothing can go through this provider until an operator fixes something: bad or
    rotated credentials, a sender that cannot send, missing settings. Not the message's
    fault: it keeps its attempt and stays pending; the run stops using the provider, fails
    and says what to fix (`hint`). `sender` is set when only that sender is refused."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        http_status: int | None = None,
        hint: str = "",
        sender: str = "",
    ) -> None:
        super().__init__(message, code=code, http_status=http_status)
        self.hint = hint
        self.sender = sender


class SmsProvider(ABC):
    @abstractmethod
    def send_sms(
        self,
        to: str,
        body: str,
        *,
        from_number: str | None = None,
        status_callback: str | None = None,
    ) -> SendResult: ...

    @abstractmethod
    def find_sent(self, to: str, since: datetime, from_number: str | None = None) -> list[SendResult]:
        """Messages to `to` created at/after `since` (crash reconciliation)."""


class EmailProvider(ABC):
    @abstractmethod
    def send_email(self, payload: EmailPayload) -> SendResult: ...

    def send_batch(self, payloads: list[EmailPayload], idempotency_key: str) -> list[SendResult]:
        # Fallback for providers without a batch endpoint: each payload keeps
        # its own idempotency key, so a retried loop cannot double-send.
        return [self.send_email(p) for p in payloads]


def error_for_status(
    message: str,
    *,
    code: str | None,
    http_status: int | None,
    retry_after: float | None,
    account_hint: str,
    may_have_sent: bool,
) -> ProviderError:
    """The error kind an HTTP status alone implies, once a provider's own codes are checked:
    401/403 is our account, another 4xx this message, anything else (5xx, no answer) transient."""
    if http_status in (401, 403):
        return AccountError(message, code=code, http_status=http_status, hint=account_hint)
    if http_status is not None and 400 <= http_status < 500:
        return PermanentError(message, code=code, http_status=http_status)
    return TransientError(
        message, code=code, http_status=http_status, retry_after=retry_after, may_have_sent=may_have_sent
    )


def setting(name: str, default: Any = None) -> Any:
    # getattr with a default so this package works before settings.py
    # defines the provider settings.
    return getattr(settings, name, default)


def require_settings(choice: str, names: tuple[str, ...]) -> None:
    """Fail at start-up, saying which variable to set, when a chosen provider lacks one."""
    for name in names:
        if not setting(name):
            raise ImproperlyConfigured(f"{choice} but {name} is not set: set it in .env (see .env.example)")


def timeout_seconds() -> float:
    value = setting("PROVIDER_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS)
    return float(value) if value else DEFAULT_TIMEOUT_SECONDS


def header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    """Case-insensitive lookup; SDKs hand back plain dicts of raw headers."""
    if not headers:
        return None
    wanted = name.lower()
    for key, value in headers.items():
        if str(key).lower() == wanted:
            return str(value)
    return None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After is either delta-seconds or an HTTP-date (RFC 9110)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def network_error(exc: requests.RequestException, provider: str) -> TransientError:
    """Map a requests failure to a TransientError, flagging ambiguous ones."""
    return TransientError(
        f"{provider} request failed: {type(exc).__name__}",
        code=type(exc).__name__,
        may_have_sent=_may_have_reached_server(exc),
    )


def _may_have_reached_server(exc: requests.RequestException) -> bool:
    # Only failures to open the connection prove nothing was sent; a read
    # timeout or dropped connection may come after the provider accepted it.
    if isinstance(exc, requests.ConnectTimeout):
        return False
    if isinstance(exc, requests.ConnectionError):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        return not isinstance(reason, NewConnectionError)
    return True
