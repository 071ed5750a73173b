"""Run the fake Twilio/Resend server in its own process (so it does not share the benchmark's
GIL): prints its URL, serves until stdin closes.

    python bench/fake_server.py --latency 0.05
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fakes.providers import FakeProviders  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    with FakeProviders() as fake:
        fake.set_latency(args.latency)
        print(fake.url, flush=True)
        sys.stdin.read()  # until the parent closes our stdin
        print(len(fake.sms_sent()) + len(fake.emails_sent()), flush=True)


if __name__ == "__main__":
    main()
