"""Who may scrape /metrics: the cron secret, or a caller from METRICS_ALLOWED_IPS."""

import ipaddress

from django.conf import settings
from django.http import HttpRequest

from scheduling import auth


def address_allowed(ip: str) -> bool:
    """Is `ip` in METRICS_ALLOWED_IPS (addresses or networks: "10.0.0.0/8")?"""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(entry, strict=False) for entry in settings.METRICS_ALLOWED_IPS)


def refusal(request: HttpRequest) -> int | None:
    """None when the caller may scrape, else the HTTP status to answer.

    401 for a wrong secret (counted and throttled like the cron triggers: 429 after too many),
    403 for no secret from an address that is not allowed. The address is the one the
    trusted proxy reports (scheduling.auth.client_ip), never the proxy's own.
    """
    offered = auth.offered_secret(request)
    if offered and auth.secret_matches(offered):
        return None
    if not offered and address_allowed(auth.client_ip(request)):
        return None
    if not offered:
        return 403
    throttled = auth.is_throttled(request)
    auth.record_failure(request)
    return 429 if throttled else 401
