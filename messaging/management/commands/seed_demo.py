from typing import Any

from django.core.management.base import BaseCommand

from messaging.demo import ensure_demo_staff


class Command(BaseCommand):
    help = "Load deterministic demo data and (re)create the staff user `demo`, printing its password."

    def handle(self, *args: Any, **options: Any) -> None:
        password = ensure_demo_staff()
        self.stdout.write(
            "Demo staff user: username=demo password=" + password + "\n"
            "Log in at http://127.0.0.1:8000/admin/"
        )
