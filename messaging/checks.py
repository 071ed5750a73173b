"""`python manage.py check` (and every command's start): a provider chosen without its settings
is an error, named with the variable to set, before any message is held for it; so is a
QUIET_HOURS that is not a window."""

from typing import Any

from django.conf import settings
from django.core.checks import Error, register

from messaging.quiet_hours import parse_window

# What each provider choice needs; the same names the providers check when they start.
REQUIRED_SETTINGS: dict[tuple[str, str], tuple[str, ...]] = {
    ("SMS_PROVIDER", "twilio"): ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER"),
    ("EMAIL_PROVIDER", "resend"): ("RESEND_API_KEY", "RESEND_FROM_EMAIL"),
}


def required_settings(name: str, choice: str) -> tuple[str, ...]:
    """What a provider choice needs now: a Messaging Service stands in for TWILIO_FROM_NUMBER."""
    names = REQUIRED_SETTINGS.get((name, choice), ())
    if getattr(settings, "TWILIO_MESSAGING_SERVICE_SID", ""):
        names = tuple(n for n in names if n != "TWILIO_FROM_NUMBER")
    return names


KNOWN_PROVIDERS = {"SMS_PROVIDER": ("twilio", "console"), "EMAIL_PROVIDER": ("resend", "console")}


@register()
def check_provider_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    errors = []
    for name, known in KNOWN_PROVIDERS.items():
        choice = str(getattr(settings, name, "console") or "console").strip().lower()
        if choice not in known:
            errors.append(
                Error(
                    f"{name}={choice!r} is not a known provider",
                    hint=f"set {name} to one of: {', '.join(known)}",
                    id="messaging.E001",
                )
            )
            continue
        for required in required_settings(name, choice):
            if not getattr(settings, required, ""):
                errors.append(
                    Error(
                        f"{name}={choice} but {required} is not set: nothing can be sent through it",
                        hint=f"set {required} in .env (see .env.example)",
                        id="messaging.E002",
                    )
                )
    return errors


@register()
def check_quiet_hours_setting(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """QUIET_HOURS is the window every client without its own uses: a typo must stop the
    start, not fail each delivery run."""
    try:
        parse_window(str(settings.QUIET_HOURS))
    except ValueError as exc:
        return [
            Error(
                f"QUIET_HOURS={settings.QUIET_HOURS!r} is not a valid window: {exc}",
                hint="set QUIET_HOURS in .env to start-end in 24-hour local time, e.g. QUIET_HOURS=08:00-21:00",
                id="messaging.E003",
            )
        ]
    return []
