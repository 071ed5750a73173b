"""A fake Twilio + Resend API on 127.0.0.1, so tests run the real SDKs.

    with FakeProviders() as fake:
        fake.fail_next(1, "429", retry_after="7")
        ...  # point TWILIO_API_BASE_URL / RESEND_API_URL at fake.url
        assert fake.sms_sent()[0]["to"] == "+15550000001"

Fault kinds: "500", "429", "timeout" (any endpoint of either service unless
`service=` narrows it), "twilio_21211", "twilio_21610" (Twilio message
create), "resend_422", "resend_409_concurrent" (Resend sends).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from . import wire
from .resend_routes import handle_resend
from .twilio_routes import handle_twilio

FAKE_ACCOUNT_SID = "AC" + "0" * 32
FAKE_AUTH_TOKEN = "test-token"
FAKE_FROM_NUMBER = "+15005550006"
FAKE_RESEND_KEY = "re_test_key"
FAKE_FROM_EMAIL = "Scheduler <noreply@example.test>"

FAULT_KINDS = {
    "500",
    "429",
    "timeout",
    "twilio_21211",
    "twilio_21610",
    "resend_422",
    "resend_409_concurrent",
}


SEND_ROUTES = ("sms_create", "email", "email_batch")


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # keys lower-cased
    form: dict[str, str] | None
    json: Any
    timestamp: float
    service: str | None = None  # "twilio" | "resend" | None (unknown path)
    route: str | None = None  # "sms_create", "sms_list", "email", "email_batch"
    status: int | None = None
    outcome: str = ""  # "sent", "replayed", "listed", "rate_limited", "fault:<kind>", "error:<code>"
    extra_headers: dict[str, str] = field(default_factory=dict)  # sent with a normal answer

    def recipients(self) -> list[str]:
        if self.form is not None:
            return [self.form["To"]] if "To" in self.form else []
        if "To" in self.query:
            return [self.query["To"]]
        items = self.json if isinstance(self.json, list) else [self.json]
        found: list[str] = []
        for item in items:
            to = item.get("to") if isinstance(item, dict) else None
            found.extend([to] if isinstance(to, str) else to or [])
        return found


@dataclass
class Fault:
    kind: str
    remaining: int | None  # None: until clear_faults()
    to: str | None = None
    service: str | None = None
    retry_after: str | None = "1"
    delay: float = 5.0  # "timeout": how long to stall before answering
    process: bool = True  # "timeout": handle (and record) the request first

    def matches(self, req: RecordedRequest) -> bool:
        service = self.service or _service_of_kind(self.kind)
        if service and service != req.service:
            return False
        if self.kind.startswith("twilio_") and req.route != "sms_create":
            return False
        if self.kind.startswith("resend_") and req.route not in (
            "email",
            "email_batch",
        ):
            return False
        return self.to is None or self.to in req.recipients()


def _service_of_kind(kind: str) -> str | None:
    return kind.split("_", 1)[0] if "_" in kind else None


@dataclass
class _Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class FakeProviders:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> FakeProviders:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-providers",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        # Wakes handlers stalled by a "timeout" fault so they exit promptly.
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "FakeProviders not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- state -------------------------------------------------------------
    def reset(self) -> None:
        with self.lock:
            self.requests: list[RecordedRequest] = []
            self.messages: list[dict] = []  # every SMS Twilio "knows", incl. preloaded
            self.emails: list[dict] = []
            self.idempotency: dict[str, dict] = {}
            self.faults: list[Fault] = []
            self.latency = 0.0
            # service -> (requests allowed in any 1 s window, Retry-After of its 429s)
            self.rate_limits: dict[str, tuple[int, str | None]] = {}
            self._window: dict[str, list[float]] = {}  # service -> accepted send times
            # What the fake "account" accepts, as the real services check it: change these
            # to play rotated credentials or a sender the account does not own.
            self.twilio_auth_token = FAKE_AUTH_TOKEN
            self.twilio_senders: set[str] | None = None  # None: any From is the account's
            self.resend_api_key = FAKE_RESEND_KEY
            self.resend_domains: set[str] | None = None  # None: every From domain is verified

    def sms_sent(self) -> list[dict]:
        """Messages created through the API (not preloaded), oldest first."""
        with self.lock:
            return [dict(m) for m in self.messages if not m["preloaded"]]

    def emails_sent(self) -> list[dict]:
        """Accepted emails, batch items flattened; replays are not included."""
        with self.lock:
            return [dict(e) for e in self.emails]

    def replayed(self) -> list[RecordedRequest]:
        """Requests answered from the idempotency cache (nothing re-sent)."""
        with self.lock:
            return [r for r in self.requests if r.outcome == "replayed"]

    def requests_to(self, route: str) -> list[RecordedRequest]:
        with self.lock:
            return [r for r in self.requests if r.route == route]

    def preload_sms(
        self,
        to: str,
        body: str = "preloaded",
        *,
        from_number: str = FAKE_FROM_NUMBER,
        date_created: datetime | None = None,
        status: str = "sent",
        account_sid: str = FAKE_ACCOUNT_SID,
    ) -> dict:
        """Record a message as sent without a request, e.g. before a crash."""
        return self.store_sms(account_sid, to, from_number, body, None, date_created, status, True)

    def store_sms(
        self,
        account_sid: str,
        to: str,
        from_number: str,
        body: str,
        status_callback: str | None,
        date_created: datetime | None = None,
        status: str = "sent",
        preloaded: bool = False,
        messaging_service: str | None = None,
    ) -> dict:
        # Twilio timestamps have whole-second precision.
        created = (date_created or datetime.now(UTC)).replace(microsecond=0)
        record = {
            "sid": wire.new_message_sid(),
            "account_sid": account_sid,
            "to": to,
            "from": from_number,
            "body": body,
            "status_callback": status_callback,
            "status": status,
            "date_created": created,
            # Twilio leaves date_sent empty until the carrier hand-off.
            "date_sent": None if status in ("queued", "accepted") else created,
            "preloaded": preloaded,
            "messaging_service_sid": messaging_service,
        }
        with self.lock:
            self.messages.append(record)
        return dict(record)

    # -- faults --------------------------------------------------------------
    def set_latency(self, seconds: float) -> None:
        with self.lock:
            self.latency = seconds

    def set_rate_limit(self, service: str, per_second: int, *, retry_after: str | None = "1") -> None:
        """Answer sends of `service` ("twilio" | "resend") with 429 past `per_second` accepted in
        the last second (a sliding window, as strict as a provider can be), with Retry-After
        (Resend also gets its ratelimit-* headers on every send)."""
        with self.lock:
            self.rate_limits[service] = (per_second, retry_after)
            self._window[service] = []

    def rate_limited(self, service: str | None = None) -> list[RecordedRequest]:
        """Sends refused with a 429 by the rate limit (not by a fault)."""
        with self.lock:
            return [r for r in self.requests if r.outcome == "rate_limited" and service in (None, r.service)]

    def send_times(self, service: str, *, refused: bool = True) -> list[float]:
        """Arrival times (time.time()) of the sends to `service`, oldest first; with
        refused=False only those the rate limit let through."""
        with self.lock:
            return sorted(
                r.timestamp
                for r in self.requests
                if r.service == service and r.route in SEND_ROUTES and (refused or r.outcome != "rate_limited")
            )

    def _rate_check(self, req: RecordedRequest) -> _Reply | None:
        limit = self.rate_limits.get(req.service or "")
        if limit is None or req.route not in SEND_ROUTES:
            return None
        per_second, retry_after = limit
        with self.lock:
            window = self._window[req.service]
            window[:] = [t for t in window if t > req.timestamp - 1.0]
            refused = len(window) >= per_second
            if not refused:
                window.append(req.timestamp)
            remaining = max(0, per_second - len(window))
            reset = 1 if not window else max(1, round(window[0] + 1.0 - req.timestamp))
        headers = {}
        if req.service == "resend":
            headers = {
                "ratelimit-limit": str(per_second),
                "ratelimit-remaining": str(remaining),
                "ratelimit-reset": str(reset),
            }
        if not refused:
            req.extra_headers = headers
            return None
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        if req.service == "twilio":
            status, body = wire.twilio_error(20429)
        else:
            status, body = wire.resend_error("rate_limit_exceeded")
        return _Reply(status, body, headers)

    def fail_next(self, n: int, kind: str, **options: Any) -> Fault:
        """Fail the next `n` matching requests. Options: to, service,
        retry_after (str or None for no header), delay, process."""
        return self._add_fault(kind, n, options)

    def set_fault(self, kind: str, **options: Any) -> Fault:
        """Fail every matching request until clear_faults()."""
        return self._add_fault(kind, None, options)

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def _add_fault(self, kind: str, n: int | None, options: dict) -> Fault:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if options.get("retry_after") is not None:
            options["retry_after"] = str(options["retry_after"])
        fault = Fault(kind, n, **options)
        with self.lock:
            self.faults.append(fault)
        return fault

    def _take_fault(self, req: RecordedRequest) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(req):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self.faults.remove(fault)
                    return fault
        return None

    # -- request handling ----------------------------------------------------
    def handle(self, req: RecordedRequest) -> _Reply:
        _classify_route(req)
        with self.lock:
            self.requests.append(req)
            latency = self.latency
        # Counted on arrival, as a provider's limiter does; answered after the latency.
        limited = self._rate_check(req) if req.route is not None else None
        if latency:
            self._stopping.wait(latency)
        if req.route is None:
            return self._finish(req, _Reply(404, {"message": "not found"}), "error:404")
        if limited is not None:
            return self._finish(req, limited, "rate_limited")
        fault = self._take_fault(req)
        if fault is not None and fault.kind == "timeout":
            reply = self._route(req) if fault.process else _Reply(504, {"message": "stalled"})
            reply.delay = fault.delay
            return self._finish(req, reply, req.outcome or "fault:timeout")
        if fault is not None:
            return self._finish(req, _fault_reply(fault, req), f"fault:{fault.kind}")
        return self._route(req)

    def _route(self, req: RecordedRequest) -> _Reply:
        handler = handle_twilio if req.service == "twilio" else handle_resend
        status, body, outcome = handler(self, req)
        return self._finish(req, _Reply(status, body, dict(req.extra_headers)), outcome)

    def _finish(self, req: RecordedRequest, reply: _Reply, outcome: str) -> _Reply:
        with self.lock:
            req.status, req.outcome = reply.status, outcome
        return reply

    def wait_stopping(self, seconds: float) -> None:
        self._stopping.wait(seconds)


def _classify_route(req: RecordedRequest) -> None:
    parts = req.path.strip("/").split("/")
    if len(parts) == 4 and parts[0] == wire.TWILIO_API_VERSION and parts[3] == "Messages.json":
        req.service = "twilio"
        req.route = {"POST": "sms_create", "GET": "sms_list"}.get(req.method)
    elif req.path in ("/emails", "/emails/batch") and req.method == "POST":
        req.service = "resend"
        req.route = "email" if req.path == "/emails" else "email_batch"


def _fault_reply(fault: Fault, req: RecordedRequest) -> _Reply:
    headers = {}
    if fault.kind == "429" and fault.retry_after is not None:
        headers["Retry-After"] = fault.retry_after
    twilio = {"500": 20500, "429": 20429, "twilio_21211": 21211, "twilio_21610": 21610}
    resend = {
        "500": "internal_server_error",
        "429": "rate_limit_exceeded",
        "resend_422": "validation_error",
        "resend_409_concurrent": "concurrent_idempotent_requests",
    }
    if req.service == "twilio":
        status, body = wire.twilio_error(twilio[fault.kind])
    else:
        status, body = wire.resend_error(resend[fault.kind])
    return _Reply(status, body, headers)


class _Server(ThreadingHTTPServer):
    # socketserver's default backlog of 5 refuses connections when dozens of worker threads
    # connect at once (the exactly-once tests): a refused connection is a transient error
    # that the code under test would rightly retry later, not a behaviour under test.
    request_queue_size = 256


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' sessions expect
    # Headers and body go out in separate writes; without TCP_NODELAY the client waits out a
    # 40 ms delayed ACK on every keep-alive request.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output clean; assertions use fake.requests

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        fake: FakeProviders = self.server.fake  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        reply = fake.handle(_parse(self.command, self.path, self.headers, raw))
        if reply.delay:
            fake.wait_stopping(reply.delay)
        payload = json.dumps(reply.body).encode()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (its timeout fired); nothing to answer.
            self.close_connection = True


def _parse(method: str, target: str, headers: Any, raw: bytes) -> RecordedRequest:
    url = urlsplit(target)
    lowered = {k.lower(): v for k, v in headers.items()}
    ctype = lowered.get("content-type", "")
    form = body = None
    if "application/x-www-form-urlencoded" in ctype:
        form = {k: v[0] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}
    elif raw:
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
    query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
    return RecordedRequest(method, url.path, query, lowered, form, body, time.time())


def unused_port_url() -> str:
    """A URL nothing listens on, for connection-refused tests."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
