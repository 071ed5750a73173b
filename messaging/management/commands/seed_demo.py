from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from messaging.demo import banner, ensure_demo_staff, seed_demo_data


class Command(BaseCommand):
    help = "Load deterministic demo data and (re)create the staff user `demo`, printing its password."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--seed", type=int, default=42, help="Random seed: the same seed gives the same data.")

    def handle(self, *args: Any, seed: int, **options: Any) -> None:
        password = ensure_demo_staff()
        summary = seed_demo_data(seed=seed)
        self.stdout.write(summary.line())
        self.stdout.write(banner(password))
