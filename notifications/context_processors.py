from django.http import HttpRequest

from notifications.services import unread_count


def unread(request: HttpRequest) -> dict[str, int]:
    """`notifications_unread` for the pages' header (one COUNT on an index, staff users only)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not user.is_staff:
        return {}
    return {"notifications_unread": unread_count(user)}
