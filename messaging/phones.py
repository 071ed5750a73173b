"""Phone numbers: validated and normalised to E.164 with `phonenumbers`."""

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError


def normalize_phone(raw: str, region: str | None = None) -> str:
    """`+15551234567` from any common way of writing a valid number; ValidationError if not."""
    region = region or getattr(settings, "DEFAULT_PHONE_REGION", "US")
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise ValidationError(f"{raw!r} is not a phone number: {exc}") from exc
    if not phonenumbers.is_possible_number(number) or not phonenumbers.is_valid_number(number):
        raise ValidationError(f"{raw!r} is not a valid phone number; use E.164, e.g. +14155550123")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def validate_phone(value: str) -> None:
    """Model field validator: the value must already be E.164."""
    if value and normalize_phone(value) != value:
        raise ValidationError(f"{value!r} is not in E.164 form; use e.g. +14155550123")
