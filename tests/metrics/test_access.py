"""Who may scrape /metrics: the cron secret from anywhere, no secret from METRICS_ALLOWED_IPS."""

import pytest

pytestmark = pytest.mark.django_db
OUTSIDE = {"REMOTE_ADDR": "203.0.113.9"}


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.CRON_SECRET = ["test-secret-one", "test-secret-two"]
    settings.METRICS_ALLOWED_IPS = ["127.0.0.1", "::1", "10.1.0.0/16"]
    settings.CRON_TRUSTED_PROXIES = ["127.0.0.1"]
    settings.CRON_AUTH_FAILURES_PER_MINUTE = 3


def test_the_cron_secret_lets_any_address_scrape(client):
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer test-secret-two", **OUTSIDE).status_code == 200
    assert client.get("/metrics", HTTP_X_CRON_SECRET="test-secret-one", **OUTSIDE).status_code == 200


def test_a_wrong_secret_is_401_even_from_an_allowed_address(client):
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 401 and response.content == b""
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_allowed_addresses_and_networks_need_no_secret(client):
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.1.200.7").status_code == 200


def test_no_secret_from_another_address_is_403(client):
    response = client.get("/metrics", **OUTSIDE)
    assert response.status_code == 403 and response.content == b""
    assert client.get("/metrics", REMOTE_ADDR="10.2.0.1").status_code == 403


def test_behind_the_proxy_the_forwarded_address_counts_not_the_proxy(client):
    # nginx on this host connects from 127.0.0.1 and reports the caller in X-Real-IP.
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_REAL_IP="203.0.113.9").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_REAL_IP="10.1.0.5").status_code == 200
    # From an untrusted peer the header is ignored, so it cannot borrow an allowed address.
    assert client.get("/metrics", HTTP_X_REAL_IP="127.0.0.1", **OUTSIDE).status_code == 403


def test_repeated_wrong_secrets_are_throttled_but_the_right_one_passes(client):
    statuses = [client.get("/metrics", HTTP_AUTHORIZATION="Bearer guess", **OUTSIDE).status_code for _ in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer test-secret-one", **OUTSIDE).status_code == 200


def test_only_get(client):
    assert client.post("/metrics", HTTP_AUTHORIZATION="Bearer test-secret-one").status_code == 405


def test_a_malformed_allow_list_stops_start_up_naming_the_setting():
    from tests.conftest import start_manage

    process = start_manage("check", METRICS_ALLOWED_IPS="127.0.0.1,10.0.0/33")
    _, err = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "METRICS_ALLOWED_IPS: '10.0.0/33' does not appear to be an IPv4 or IPv6 network" in err
