"""Site-wide views that belong to no app: the favicon."""

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET

FAVICON = settings.BASE_DIR / "static" / "favicon.svg"


@require_GET
@cache_control(max_age=86400, public=True)
def favicon(request: HttpRequest) -> HttpResponse:
    """The icon at /favicon.ico, where browsers look without being told, from Django itself,
    so it answers with or without a static-file server in front."""
    return HttpResponse(FAVICON.read_bytes(), content_type="image/svg+xml")
