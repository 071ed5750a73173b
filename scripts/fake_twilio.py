"""A stand-in for Twilio's Messages API on 127.0.0.1, for scripts/rehearse_install.sh.

    python3 scripts/fake_twilio.py --account-sid AC... --auth-token TOKEN \
        --port-file /tmp/port --record /tmp/sms.jsonl

It answers `POST /2010-04-01/Accounts/<sid>/Messages.json` the way Twilio does (201 with a
Message resource, status "queued") when the Basic credentials are the account's, 401 (Twilio
error 20003) otherwise, and appends every request it got, as one JSON line, to --record. It
listens on a free port (or --port) and writes the port to --port-file once it listens.
Standard library only: it runs with the system Python, outside the project's virtualenv.
"""

import argparse
import base64
import json
import secrets
import threading
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

API_VERSION = "2010-04-01"


def message_resource(account_sid: str, form: dict[str, str]) -> dict:
    sid = "SM" + secrets.token_hex(16)
    now = format_datetime(datetime.now(UTC))
    uri = f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}"
    return {
        "account_sid": account_sid,
        "api_version": API_VERSION,
        "body": form.get("Body", ""),
        "date_created": now,
        "date_sent": None,
        "date_updated": now,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": form.get("From"),
        "messaging_service_sid": form.get("MessagingServiceSid"),
        "num_media": "0",
        "num_segments": "1",
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": "queued",
        "subresource_uris": {"media": f"{uri}/Media.json"},
        "to": form.get("To"),
        "uri": f"{uri}.json",
    }


class Handler(BaseHTTPRequestHandler):
    server_version = "fake-twilio/1"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        pass

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self, entry: dict) -> None:
        with self.server.lock, open(self.server.record, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    def _credentials(self) -> tuple[str, str] | None:
        value = self.headers.get("Authorization", "")
        if not value.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(value[6:]).decode().partition(":")
        except ValueError:
            return None
        return user, password

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8", "replace")
        form = {key: values[0] for key, values in parse_qs(raw, keep_blank_values=True).items()}
        path = urlsplit(self.path).path
        parts = path.strip("/").split("/")
        entry = {"method": "POST", "path": path, "form": form, "at": datetime.now(UTC).isoformat()}
        if len(parts) != 4 or parts[0] != API_VERSION or parts[1] != "Accounts" or parts[3] != "Messages.json":
            entry["status"] = 404
            self._record(entry)
            self._answer(404, {"code": 20404, "message": "The requested resource was not found", "status": 404})
            return
        account_sid = parts[2]
        if account_sid != self.server.account_sid or self._credentials() != (account_sid, self.server.auth_token):
            entry["status"] = 401
            self._record(entry)
            self._answer(401, {"code": 20003, "message": "Authenticate", "status": 401})
            return
        if not form.get("To") or not (form.get("Body") or form.get("MediaUrl")):
            entry["status"] = 400
            self._record(entry)
            self._answer(400, {"code": 21604, "message": "A 'To' phone number and a Body are required.", "status": 400})
            return
        resource = message_resource(account_sid, form)
        entry.update(status=201, sid=resource["sid"])
        self._record(entry)
        self._answer(201, resource)

    def do_GET(self) -> None:  # noqa: N802
        # Message list / fetch (the reconcile path): nothing is ever found here.
        self._record({"method": "GET", "path": self.path, "status": 200, "at": datetime.now(UTC).isoformat()})
        self._answer(200, {"messages": [], "page": 0, "page_size": 50, "next_page_uri": None, "start": 0, "end": 0})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--account-sid", required=True)
    parser.add_argument("--auth-token", required=True)
    parser.add_argument("--record", required=True, help="file the requests are appended to (JSON lines)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", help="written with the port once the server listens")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.account_sid, server.auth_token, server.record = args.account_sid, args.auth_token, args.record
    server.lock = threading.Lock()
    if args.port_file:
        with open(args.port_file, "w", encoding="utf-8") as f:
            f.write(f"{server.server_address[1]}\n")
    server.serve_forever()


if __name__ == "__main__":
    main()
