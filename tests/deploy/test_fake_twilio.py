"""scripts/fake_twilio.py, the Twilio stand-in of scripts/rehearse_install.sh, answers the real SDK
through the provider's own HTTP client the way the rehearsal's delivery uses it."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from messaging.delivery.providers.twilio import RoutingHttpClient
from tests.conftest import ROOT

SID = "AC" + "1" * 32
TOKEN = "rehearsal-token"


@pytest.fixture
def fake(tmp_path):
    port_file, record = tmp_path / "port", tmp_path / "sms.jsonl"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "fake_twilio.py"), "--account-sid", SID, "--auth-token", TOKEN]
        + ["--port-file", str(port_file), "--record", str(record)]
    )
    try:
        for _ in range(100):
            if port_file.exists() and port_file.read_text().strip():
                break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port_file.read_text().strip()}", record
    finally:
        process.terminate()
        process.wait(timeout=10)


def client(url: str, token: str = TOKEN) -> Client:
    return Client(SID, token, http_client=RoutingHttpClient(base_url=url, timeout=5))


def test_a_message_create_is_answered_like_twilio_and_recorded(fake):
    url, record = fake
    message = client(url).messages.create(to="+14155550123", from_="+15005550006", body="hello")
    assert message.sid.startswith("SM") and len(message.sid) == 34
    assert message.status == "queued" and message.to == "+14155550123"
    (entry,) = [json.loads(line) for line in Path(record).read_text().splitlines()]
    assert entry["path"] == f"/2010-04-01/Accounts/{SID}/Messages.json" and entry["status"] == 201
    assert entry["form"] == {"To": "+14155550123", "From": "+15005550006", "Body": "hello"}
    assert entry["sid"] == message.sid


def test_wrong_credentials_get_twilios_401(fake):
    url, record = fake
    with pytest.raises(TwilioRestException) as raised:
        client(url, token="wrong").messages.create(to="+14155550123", from_="+15005550006", body="x")
    assert raised.value.status == 401 and raised.value.code == 20003
    assert json.loads(Path(record).read_text())["status"] == 401
