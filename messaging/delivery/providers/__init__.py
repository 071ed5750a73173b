"""Pluggable SMS/email providers, chosen by settings like EMAIL_BACKEND.

    SMS_PROVIDER   = "twilio" | "console"
    EMAIL_PROVIDER = "resend" | "console"

Instances are cached per process (they hold per-thread HTTP sessions);
call reset_providers() after changing settings.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from messaging.delivery.ratelimit import reset_buckets

from .base import (
    AccountError,
    EmailPayload,
    EmailProvider,
    PermanentError,
    ProviderError,
    SendResult,
    SmsProvider,
    TransientError,
    setting,
)

__all__ = [
    "AccountError",
    "EmailPayload",
    "EmailProvider",
    "PermanentError",
    "ProviderError",
    "SendResult",
    "SmsProvider",
    "TransientError",
    "get_email_provider",
    "get_sms_provider",
    "reset_providers",
]

DEFAULT_PROVIDER = "console"

_cache: dict[str, Any] = {}
_lock = threading.Lock()


def _twilio() -> SmsProvider:
    from .twilio import TwilioSmsProvider

    return TwilioSmsProvider.from_settings()


def _resend() -> EmailProvider:
    from .resend import ResendEmailProvider

    return ResendEmailProvider.from_settings()


def _console_sms() -> SmsProvider:
    from .console import ConsoleSmsProvider

    return ConsoleSmsProvider()


def _console_email() -> EmailProvider:
    from .console import ConsoleEmailProvider

    return ConsoleEmailProvider()


# Factories import lazily so a console-only dev setup never imports the SDKs.
_FACTORIES: dict[str, dict[str, Callable[[], Any]]] = {
    "SMS_PROVIDER": {"twilio": _twilio, "console": _console_sms},
    "EMAIL_PROVIDER": {"resend": _resend, "console": _console_email},
}


def _get(setting_name: str) -> Any:
    with _lock:
        provider = _cache.get(setting_name)
        if provider is not None:
            return provider
        choice = str(setting(setting_name, DEFAULT_PROVIDER) or DEFAULT_PROVIDER)
        factories = _FACTORIES[setting_name]
        factory = factories.get(choice.strip().lower())
        if factory is None:
            allowed = ", ".join(sorted(factories))
            raise ImproperlyConfigured(f"{setting_name}={choice!r} is not a known provider; expected one of: {allowed}")
        provider = _cache[setting_name] = factory()
        return provider


def get_sms_provider() -> SmsProvider:
    return _get("SMS_PROVIDER")


def get_email_provider() -> EmailProvider:
    return _get("EMAIL_PROVIDER")


def reset_providers() -> None:
    """Forget cached providers and rate buckets (settings changed)."""
    with _lock:
        _cache.clear()
    reset_buckets()


_WATCHED_SETTINGS = {
    "SMS_PROVIDER",
    "EMAIL_PROVIDER",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_FROM_NUMBER",
    "TWILIO_API_BASE_URL",
    "RESEND_API_KEY",
    "RESEND_FROM_EMAIL",
    "RESEND_API_URL",
    "PROVIDER_TIMEOUT_SECONDS",
    "TWILIO_MESSAGING_SERVICE_SID",
    "TWILIO_SEND_RATE",
    "TWILIO_SENDER_RATE",
    "TWILIO_MESSAGING_SERVICE_RATE",
    "RESEND_SEND_RATE",
}


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    # override_settings / pytest-django's `settings` fixture fire this, so a
    # test that changes provider settings never sees a stale instance.
    if setting in _WATCHED_SETTINGS:
        reset_providers()


setting_changed.connect(_on_setting_changed, dispatch_uid="messaging.delivery.providers.reset")
