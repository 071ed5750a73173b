"""GET /metrics: Prometheus text format from a registry this view owns."""

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from observability.access import refusal
from observability.collector import DatabaseCollector

# Not prometheus_client's global REGISTRY: that one also carries this process's own
# metrics (a gunicorn worker's), which say nothing about the cron jobs.
registry = CollectorRegistry()
registry.register(DatabaseCollector())

_REFUSAL_HEADERS = {401: {"WWW-Authenticate": 'Bearer realm="metrics"'}, 429: {"Retry-After": "60"}}


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    status = refusal(request)
    if status is not None:
        return HttpResponse(status=status, headers=_REFUSAL_HEADERS.get(status, {}))
    # Text format 0.0.4 by default, OpenMetrics when the scraper's Accept header asks for it.
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(registry), content_type=content_type)
