"""Run the fake Twilio/Resend server in its own process (so it does not share the benchmark's
GIL): prints its URL, serves until stdin closes, then prints what it saw as one JSON line.

    python bench/fake_server.py --latency 0.05 [--twilio-rate 10] [--resend-rate 2]
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fakes.providers import FakeProviders  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--twilio-rate", type=int, default=0, help="answer 429 past this many SMS a second")
    parser.add_argument("--resend-rate", type=int, default=0, help="answer 429 past this many requests a second")
    args = parser.parse_args()
    with FakeProviders() as fake:
        fake.set_latency(args.latency)
        for service, rate in (("twilio", args.twilio_rate), ("resend", args.resend_rate)):
            if rate:
                fake.set_rate_limit(service, rate)
        print(fake.url, flush=True)
        sys.stdin.read()  # until the parent closes our stdin
        seen = {
            "sent": len(fake.sms_sent()) + len(fake.emails_sent()),
            "rate_limited": len(fake.rate_limited()),
            "twilio_times": fake.send_times("twilio"),
            "resend_times": fake.send_times("resend"),
        }
        print(json.dumps(seen), flush=True)


if __name__ == "__main__":
    main()
