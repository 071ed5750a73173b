"""Resend email provider built on the official SDK (resend.Emails/Batch)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import requests
import resend
from resend.exceptions import ResendError
from resend.http_client import HTTPClient

from messaging.checks import REQUIRED_SETTINGS
from messaging.delivery.ratelimit import wait_for_turn

from .base import (
    AccountError,
    EmailPayload,
    EmailProvider,
    PermanentError,
    ProviderError,
    SendResult,
    TransientError,
    error_for_status,
    header,
    network_error,
    parse_retry_after,
    require_settings,
    setting,
    timeout_seconds,
)

DEFAULT_API_URL = "https://api.resend.com"
MAX_BATCH = 100  # Resend rejects larger batches
# A retry that overlaps the original request gets this 409; the original
# may still succeed, so it is safe to retry with the same idempotency key.
CONCURRENT_IDEMPOTENT = "concurrent_idempotent_requests"
# Name the SDK gives to any exception raised by the HTTP client.
SDK_TRANSPORT_ERROR = "HttpClientError"
# Nothing can go until an operator acts. Any other 401/403 is treated the same way.
ACCOUNT_HINTS = {
    "missing_api_key": "set RESEND_API_KEY",
    "invalid_api_key": "check RESEND_API_KEY (rotated or revoked key?)",
    "restricted_api_key": "RESEND_API_KEY may not send email: use a key with sending access",
    "invalid_from_address": "check RESEND_FROM_EMAIL: its domain must be verified at Resend",
}


class SessionHttpClient(HTTPClient):
    """Resend transport: one pooled Session per thread, explicit timeout.

    Also records the last status/headers/network error per thread, since the
    SDK turns transport failures into a generic ResendError(code=500).
    """

    def __init__(self, *, timeout: float) -> None:
        self.timeout = timeout
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def last(
        self,
    ) -> tuple[int | None, dict[str, str], requests.RequestException | None]:
        return (
            getattr(self._local, "status", None),
            getattr(self._local, "headers", {}),
            getattr(self._local, "error", None),
        )

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        json: dict[str, object] | list[object] | None = None,
        files: dict[str, Any] | None = None,
        data: dict[str, str] | None = None,
    ) -> tuple[bytes, int, Mapping[str, str]]:
        state = self._local
        state.status, state.headers, state.error = None, {}, None
        wait_for_turn()  # the send slot, taken as late as can be
        try:
            resp = self._session().request(
                method=method,
                url=url,
                headers=headers,
                json=json if data is None and files is None else None,
                files=files,
                data=data,
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            state.error = exc
            raise
        state.status, state.headers = resp.status_code, dict(resp.headers)
        return resp.content, resp.status_code, resp.headers


class ResendEmailProvider(EmailProvider):
    def __init__(
        self,
        *,
        api_key: str,
        from_email: str,
        api_url: str = DEFAULT_API_URL,
        timeout: float = 10.0,
    ) -> None:
        self._api_key = api_key
        self.from_email = from_email
        self.api_url = api_url.rstrip("/")
        self.http = SessionHttpClient(timeout=timeout)
        self._configure()

    @classmethod
    def from_settings(cls) -> ResendEmailProvider:
        require_settings("EMAIL_PROVIDER=resend", REQUIRED_SETTINGS[("EMAIL_PROVIDER", "resend")])
        return cls(
            api_key=setting("RESEND_API_KEY"),
            from_email=setting("RESEND_FROM_EMAIL"),
            api_url=setting("RESEND_API_URL", DEFAULT_API_URL) or DEFAULT_API_URL,
            timeout=timeout_seconds(),
        )

    def __repr__(self) -> str:
        return f"<ResendEmailProvider api_url={self.api_url!r}>"

    def _configure(self) -> None:
        # The SDK keeps its configuration in module globals and reads
        # RESEND_API_URL only at import, so re-assert ours before each call
        # in case anything else in the process touched them.
        resend.api_key = self._api_key
        resend.api_url = self.api_url
        resend.default_http_client = self.http

    def _params(self, payload: EmailPayload) -> dict[str, Any]:
        return {
            "from": payload.from_email or self.from_email,
            "to": [payload.to],
            "subject": payload.subject,
            "html": payload.html,
            "text": payload.text,
        }

    def send_email(self, payload: EmailPayload) -> SendResult:
        _require_key(payload.idempotency_key)
        self._configure()
        try:
            resp = resend.Emails.send(self._params(payload), {"idempotency_key": payload.idempotency_key})
        except ResendError as exc:
            raise self._translate(exc) from exc
        status, _, _ = self.http.last()
        return SendResult(
            provider_id=resp["id"],
            status="sent",
            http_status=status,
            raw={"id": resp["id"]},
        )

    def send_batch(self, payloads: list[EmailPayload], idempotency_key: str) -> list[SendResult]:
        """One HTTP call for up to 100 emails; one key covers the whole batch."""
        if not payloads:
            return []
        if len(payloads) > MAX_BATCH:
            raise ValueError(f"Resend batches hold at most {MAX_BATCH} emails")
        _require_key(idempotency_key)
        self._configure()
        try:
            resp = resend.Batch.send(
                [self._params(p) for p in payloads],  # type: ignore[misc]
                {"idempotency_key": idempotency_key, "batch_validation": "strict"},
            )
        except ResendError as exc:
            raise self._translate(exc) from exc
        status, _, _ = self.http.last()
        items = resp.get("data") or []
        if len(items) != len(payloads):
            # Without a 1:1 mapping we cannot tell which email got which id.
            raise PermanentError(
                f"Resend batch returned {len(items)} ids for {len(payloads)} emails",
                code="batch_mismatch",
                http_status=status,
            )
        return [
            SendResult(item["id"], "sent", status, raw={"id": item["id"], "index": i}) for i, item in enumerate(items)
        ]

    def _translate(self, exc: ResendError) -> ProviderError:
        status, headers, net_error = self.http.last()
        if net_error is not None:
            return network_error(net_error, "Resend")
        if exc.error_type == SDK_TRANSPORT_ERROR:
            return TransientError("Resend transport error", code=SDK_TRANSPORT_ERROR, may_have_sent=True)
        try:
            status = int(exc.code)
        except (TypeError, ValueError):
            pass
        name = exc.error_type or None
        answer = getattr(exc, "headers", None) or headers
        # A 429 carries retry-after; ratelimit-reset (seconds until the window resets) is
        # the fallback when it is missing.
        retry_after = parse_retry_after(header(answer, "retry-after") or header(answer, "ratelimit-reset"))
        message = f"Resend error: {exc.message}"
        if status == 429 or (status == 409 and name == CONCURRENT_IDEMPOTENT):
            return TransientError(message, code=name, http_status=status, retry_after=retry_after)
        hint = ACCOUNT_HINTS.get(name or "", "check RESEND_API_KEY and RESEND_FROM_EMAIL")
        if name in ACCOUNT_HINTS:
            return AccountError(message, code=name, http_status=status, hint=hint)
        return error_for_status(
            message, code=name, http_status=status, retry_after=retry_after, account_hint=hint, may_have_sent=True
        )


def _require_key(key: str) -> None:
    # Without a key a retried send after a timeout could deliver twice.
    if not key:
        raise ValueError("an idempotency_key is required for every Resend send")
