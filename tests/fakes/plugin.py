"""pytest fixtures for the fake provider server.

Load with `pytest_plugins = ["tests.fakes.plugin"]` in a conftest.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from messaging.delivery.providers import reset_providers

from .providers import (
    FAKE_ACCOUNT_SID,
    FAKE_AUTH_TOKEN,
    FAKE_FROM_EMAIL,
    FAKE_FROM_NUMBER,
    FAKE_RESEND_KEY,
    FakeProviders,
)

# Short enough that timeout tests finish quickly, long enough for a loaded
# CI machine to answer a normal request.
FAKE_TIMEOUT_SECONDS = 1.0


@pytest.fixture
def fake_providers() -> Iterator[FakeProviders]:
    with FakeProviders() as fake:
        yield fake


@pytest.fixture
def provider_settings(fake_providers: FakeProviders, settings: Any) -> Iterator[Any]:
    """Point the Twilio and Resend providers at the fake server."""
    reset_providers()
    settings.SMS_PROVIDER = "twilio"
    settings.EMAIL_PROVIDER = "resend"
    settings.TWILIO_ACCOUNT_SID = FAKE_ACCOUNT_SID
    settings.TWILIO_AUTH_TOKEN = FAKE_AUTH_TOKEN
    settings.TWILIO_FROM_NUMBER = FAKE_FROM_NUMBER
    settings.TWILIO_API_BASE_URL = fake_providers.url
    settings.RESEND_API_KEY = FAKE_RESEND_KEY
    settings.RESEND_FROM_EMAIL = FAKE_FROM_EMAIL
    settings.RESEND_API_URL = fake_providers.url
    settings.PROVIDER_TIMEOUT_SECONDS = FAKE_TIMEOUT_SECONDS
    # Unthrottled so tests never wait on the token bucket; rate limiting
    # has its own clock-driven tests.
    settings.TWILIO_SEND_RATE = 0
    settings.RESEND_SEND_RATE = 0
    yield settings
    reset_providers()
