"""Scrape /metrics and read it back with prometheus_client's own parser."""

from prometheus_client.parser import text_string_to_metric_families

SECRET = {"HTTP_AUTHORIZATION": "Bearer test-secret-one"}


def scrape(client, **extra) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of one authorised scrape."""
    response = client.get("/metrics", **{**SECRET, **extra})
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]
