"""Opt-outs: numbers that must never get an SMS from a client (or from anyone)."""

from django.db.models import Q

from messaging.models import Client, OptOut


def is_opted_out(phone: str, client_id: int | None) -> bool:
    """Opted out of this client's messages, or of every client's."""
    scope = Q(client__isnull=True) | Q(client_id=client_id) if client_id else Q(client__isnull=True)
    return OptOut.objects.filter(scope, phone=phone).exists()


def record_opt_out(phone: str, client: Client | None, source: str) -> OptOut:
    opt_out, _ = OptOut.objects.get_or_create(phone=phone, client=client, defaults={"source": source})
    return opt_out


def remove_opt_out(phone: str, client: Client | None) -> int:
    return OptOut.objects.filter(phone=phone, client=client).delete()[0]
