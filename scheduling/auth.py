"""Bearer-secret authentication for HTTP schedulers.

The offered secret is compared in constant time against every configured secret (several
during a rotation). Failures are counted per client address and throttled, and logged
without the offered value.
"""

import hmac
import logging

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

logger = logging.getLogger("scheduling.auth")


def offered_secret(request: HttpRequest) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("X-Cron-Secret", "").strip()


def secret_matches(offered: str) -> bool:
    matched = False
    for secret in settings.CRON_SECRET:
        # No early exit: every configured secret is compared, so timing says nothing.
        matched |= hmac.compare_digest(offered.encode(), secret.encode())
    return matched and bool(offered)


def client_ip(request: HttpRequest) -> str:
    """The caller's address. Behind a trusted proxy (nginx on the same host by default,
    CRON_TRUSTED_PROXIES) it is the X-Real-IP that proxy sets; from anyone else such a
    header is ignored, since a prober could send a new one with every guess."""
    remote = request.META.get("REMOTE_ADDR", "unknown")
    if remote in settings.CRON_TRUSTED_PROXIES:
        forwarded = request.headers.get("X-Real-IP", "").strip()
        if forwarded:
            return forwarded
    return remote


def _failures_key(ip: str) -> str:
    return f"cron-auth-failures:{ip}"


def is_throttled(request: HttpRequest) -> bool:
    return cache.get(_failures_key(client_ip(request)), 0) >= settings.CRON_AUTH_FAILURES_PER_MINUTE


def record_failure(request: HttpRequest) -> None:
    ip = client_ip(request)
    key = _failures_key(ip)
    if cache.add(key, 1, timeout=60):
        count = 1
    else:
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=60)
            count = 1
    logger.warning(
        "cron_auth_failed",
        extra={
            "ip": ip,
            "path": request.path,
            "failures_last_minute": count,
            "header": "present" if offered_secret(request) else "missing",
        },
    )
