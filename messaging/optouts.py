"""Opt-outs: numbers that must never get an SMS from a client (or from anyone, client null).

The rule lives in one place, `OptOuts.blocks`: a number is blocked for a client when it opted
out of that client's messages or of every client's. Jobs read the opt-outs of a whole batch
with one query (`opt_outs_for`) and ask the rule per item.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from messaging.models import Client, OptOut


@dataclass(frozen=True)
class OptOuts:
    pairs: frozenset[tuple[str, int | None]]  # (phone, client id or None for every client)

    def blocks(self, phone: str, client_id: int | None) -> bool:
        return (phone, None) in self.pairs or (client_id is not None and (phone, client_id) in self.pairs)


def opt_outs_for(phones: Iterable[str]) -> OptOuts:
    """Every opt-out of these numbers, in one query."""
    phones = set(phones)
    if not phones:
        return OptOuts(frozenset())
    return OptOuts(frozenset(OptOut.objects.filter(phone__in=phones).values_list("phone", "client_id")))


def is_opted_out(phone: str, client_id: int | None) -> bool:
    return opt_outs_for([phone]).blocks(phone, client_id)


def record_opt_out(phone: str, client: Client | None, source: str) -> OptOut:
    opt_out, _ = OptOut.objects.get_or_create(phone=phone, client=client, defaults={"source": source})
    return opt_out


def remove_opt_out(phone: str, client: Client | None) -> int:
    return OptOut.objects.filter(phone=phone, client=client).delete()[0]
