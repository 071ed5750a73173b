"""Demo data for `make demo`: a staff user now; clients, leads and messages come with the
messaging models."""

import secrets

from django.contrib.auth import get_user_model


def ensure_demo_staff(username: str = "demo") -> str:
    """Create or reset the demo staff user; returns its new password."""
    password = secrets.token_urlsafe(12)
    user, _ = get_user_model().objects.get_or_create(username=username, defaults={"email": "demo@example.com"})
    user.is_staff = user.is_superuser = True
    user.set_password(password)
    user.save()
    return password
