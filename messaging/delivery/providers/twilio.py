"""Twilio SMS provider built on the official SDK (twilio.rest.Client)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from twilio.base.exceptions import (
    TwilioException,
    TwilioRestException,
    TwilioServiceException,
)
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from messaging.checks import required_settings
from messaging.delivery.ratelimit import wait_for_turn

from .base import (
    AccountError,
    PermanentError,
    ProviderError,
    SendResult,
    SmsProvider,
    TransientError,
    error_for_status,
    header,
    network_error,
    parse_retry_after,
    require_settings,
    setting,
    timeout_seconds,
)

# Invalid number, not a mobile number, recipient replied STOP. The caller
# records an opt-out for 21610, so it must see that exact code.
PERMANENT_CODES = {21211, 21614, 21610}
# Nothing can go until an operator acts: authentication failed (20003), account not active
# (20005), invalid From number (21212), From is not one of the account's numbers (21659),
# From cannot send SMS (21606). The last three concern the sender only.
CREDENTIAL_CODES = {20003, 20005}
SENDER_CODES = {21212, 21606, 21659}
# The Messaging Service SID is not a valid one (21705, 30127): no SMS can go through it.
SERVICE_CODES = {21705, 30127}
SERVICE_HINT = "check TWILIO_MESSAGING_SERVICE_SID: Twilio says it is not a valid Messaging Service"
CREDENTIALS_HINT = "check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (rotated or revoked credentials?)"
SENDER_HINT = "check TWILIO_FROM_NUMBER (or the client's SMS sender in admin): Twilio says this sender cannot send SMS"
OPTED_OUT_CODE = "21610"
RATE_LIMITED_CODE = 20429
# Cap on reconciliation look-ups; one recipient never gets this many texts
# in the window between a crash and the restart.
FIND_SENT_LIMIT = 200
# Keys of a message resource safe to keep in SendResult.raw (no body).
RAW_KEYS = ("sid", "status", "to", "from", "date_created", "date_sent", "uri")


class RoutingHttpClient(TwilioHttpClient):
    """TwilioHttpClient that can point at another host (delivery paces the sends).

    It also remembers the last response, because TwilioRestException carries
    neither headers (Retry-After) nor, for list pages, the status code. Each
    thread has its own Client and therefore its own instance, so
    `last_response` is per thread.
    """

    def __init__(self, *, base_url: str, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self._base = urlsplit(base_url.rstrip("/")) if base_url else None
        self.last_response: Response | None = None

    def _route(self, url: str) -> str:
        if self._base is None:
            return url
        parts = urlsplit(url)
        path = self._base.path + parts.path
        return urlunsplit((self._base.scheme, self._base.netloc, path, parts.query, parts.fragment))

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        self.last_response = None
        wait_for_turn()  # the send slot, taken as late as can be
        response = super().request(
            method,
            self._route(url),
            params=params,
            data=data,
            headers=headers,
            auth=auth,
            timeout=timeout,
            allow_redirects=allow_redirects,
        )
        self.last_response = response
        return response


class TwilioSmsProvider(SmsProvider):
    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_number: str,
        base_url: str = "",
        timeout: float = 10.0,
        messaging_service_sid: str = "",
    ) -> None:
        self.account_sid = account_sid
        self._auth_token = auth_token
        self.from_number = from_number
        # When set, SMS without a sender of their own go through this Messaging Service's
        # sender pool (MessagingServiceSid instead of From).
        self.messaging_service_sid = messaging_service_sid
        self.base_url = base_url
        self.timeout = timeout
        # twilio.rest.Client and its requests.Session are not documented as
        # thread-safe, so each worker thread gets its own.
        self._local = threading.local()

    @classmethod
    def from_settings(cls) -> TwilioSmsProvider:
        require_settings("SMS_PROVIDER=twilio", required_settings("SMS_PROVIDER", "twilio"))
        return cls(
            account_sid=setting("TWILIO_ACCOUNT_SID"),
            auth_token=setting("TWILIO_AUTH_TOKEN"),
            from_number=setting("TWILIO_FROM_NUMBER") or "",
            base_url=setting("TWILIO_API_BASE_URL", "") or "",
            timeout=timeout_seconds(),
            messaging_service_sid=setting("TWILIO_MESSAGING_SERVICE_SID", "") or "",
        )

    def __repr__(self) -> str:
        # Keep the token out of reprs that end up in logs and tracebacks.
        return f"<TwilioSmsProvider account={self.account_sid} base_url={self.base_url!r}>"

    def _http(self) -> RoutingHttpClient:
        http = getattr(self._local, "http", None)
        if http is None:
            http = RoutingHttpClient(base_url=self.base_url, timeout=self.timeout)
            self._local.http = http
            self._local.client = Client(self.account_sid, self._auth_token, http_client=http)
        return http

    def _client(self) -> Client:
        self._http()
        return self._local.client

    def send_sms(
        self,
        to: str,
        body: str,
        *,
        from_number: str | None = None,
        status_callback: str | None = None,
    ) -> SendResult:
        kwargs: dict[str, Any] = {"to": to, "body": body}
        if from_number or not self.messaging_service_sid:
            kwargs["from_"] = from_number or self.from_number
        else:
            kwargs["messaging_service_sid"] = self.messaging_service_sid
        if status_callback:
            kwargs["status_callback"] = status_callback
        try:
            message = self._client().messages.create(**kwargs)
        except (TwilioException, requests.RequestException) as exc:
            error = self._translate(exc)
            if isinstance(error, AccountError) and error.code in {str(c) for c in SENDER_CODES}:
                error.sender = kwargs.get("from_", "")
            raise error from exc
        response = self._http().last_response
        return SendResult(
            provider_id=message.sid or "",
            status=str(message.status or "queued"),
            http_status=response.status_code if response else None,
            raw=_redacted(response),
        )

    def find_sent(self, to: str, since: datetime, from_number: str | None = None) -> list[SendResult]:
        # Twilio timestamps have whole-second precision; without truncating,
        # a message created in the same second as `since` would be missed.
        since_utc = _as_utc(since).replace(microsecond=0)
        # No DateSent filter: a message still queued at Twilio has no date_sent yet and would
        # be missed (then sent twice). Twilio lists newest first; date_created is checked here.
        kwargs: dict[str, Any] = {"to": to, "limit": FIND_SENT_LIMIT}
        if from_number:
            kwargs["from_"] = from_number
        try:
            messages = self._client().messages.list(**kwargs)
        except (TwilioException, requests.RequestException) as exc:
            raise self._translate(exc) from exc
        results = []
        for m in messages:
            if m.date_created is not None and m.date_created < since_utc:
                continue
            if from_number and m.from_ != from_number:
                continue
            raw = {
                "sid": m.sid,
                "status": m.status,
                "to": m.to,
                "from": m.from_,
                "date_created": m.date_created.isoformat() if m.date_created else None,
                "body": m.body,
            }
            results.append(SendResult(m.sid or "", str(m.status or ""), raw=raw))
        return results

    def _translate(self, exc: Exception) -> ProviderError:
        if isinstance(exc, requests.RequestException):
            return network_error(exc, "Twilio")
        response = self._http().last_response
        headers = response.headers if response is not None else None
        if isinstance(exc, (TwilioRestException, TwilioServiceException)):
            message = (
                getattr(exc, "msg", None)
                or getattr(exc, "detail", None)
                or getattr(exc, "title", None)
                or "Twilio error"
            )
            return classify(exc.status, exc.code, headers, str(message))
        # Other TwilioExceptions (e.g. "Unable to fetch page") carry only the
        # raw response, so fall back to what the HTTP client saw.
        if response is not None:
            code, message = _body_error(response)
            return classify(response.status_code, code, headers, message)
        return TransientError(f"Twilio client error: {type(exc).__name__}")


def classify(status: int | None, code: int | str | None, headers: Any, message: str) -> ProviderError:
    """Decide retry vs give-up from the HTTP status and Twilio error code."""
    try:
        num_code = int(code) if code is not None else None
    except (TypeError, ValueError):
        num_code = None
    # The SDK substitutes the HTTP status when the body has no code.
    if num_code is not None and num_code == status:
        num_code = None
    code_str = str(num_code) if num_code is not None else None
    retry_after = parse_retry_after(header(headers, "Retry-After"))
    if status == 429 or num_code == RATE_LIMITED_CODE:
        return TransientError(message, code=code_str, http_status=status, retry_after=retry_after)
    if num_code in PERMANENT_CODES:
        return PermanentError(message, code=code_str, http_status=status)
    if num_code in SENDER_CODES:
        return AccountError(message, code=code_str, http_status=status, hint=SENDER_HINT)
    if num_code in SERVICE_CODES:
        return AccountError(message, code=code_str, http_status=status, hint=SERVICE_HINT)
    if num_code in CREDENTIAL_CODES:
        return AccountError(message, code=code_str, http_status=status, hint=CREDENTIALS_HINT)
    return error_for_status(
        message,
        code=code_str,
        http_status=status,
        retry_after=retry_after,
        account_hint=CREDENTIALS_HINT,
        may_have_sent=status is None or status >= 500,
    )


def _as_utc(value: datetime) -> datetime:
    # Naive datetimes are taken as UTC; the SDK formats without converting.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _body_error(response: Response) -> tuple[int | None, str]:
    try:
        payload = json.loads(response.text)
        return payload.get("code"), f"Twilio error: {payload.get('message', '')}"
    except (ValueError, AttributeError):
        return None, f"Twilio request failed with HTTP {response.status_code}"


def _redacted(response: Response | None) -> dict | None:
    if response is None:
        return None
    try:
        payload = json.loads(response.text)
    except ValueError:
        return None
    return {k: payload.get(k) for k in RAW_KEYS if k in payload}
