"""Clients' calendars: which zone each client lives in, and where its local days begin in UTC."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from messaging.models import Client


class BadTimezone(ValueError):
    """A client's stored timezone is not an IANA zone this machine knows."""


@dataclass(frozen=True)
class ClientZones:
    zones: dict[int, ZoneInfo]  # client id -> zone, for clients whose zone is valid
    broken: list[tuple[Client, BadTimezone]]  # the others, with what is wrong


def zone_of(client: Client) -> ZoneInfo:
    name = (client.timezone or "").strip()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise BadTimezone(
            f"client {client.pk} ({client.name}) has timezone {client.timezone!r}, which is not an IANA zone: "
            "fix it in admin (e.g. America/New_York)"
        ) from exc


def resolve_zones(clients: Iterable[Client]) -> ClientZones:
    """Split clients into those with a usable zone and those whose bad data must be reported
    without stopping the others."""
    zones: dict[int, ZoneInfo] = {}
    broken: list[tuple[Client, BadTimezone]] = []
    for client in clients:
        try:
            zones[client.pk] = zone_of(client)
        except BadTimezone as exc:
            broken.append((client, exc))
    return ClientZones(zones, broken)


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The first instant of `day` in `zone`, in UTC. Where midnight does not exist (a DST jump
    at 00:00), fold=0 maps it past the gap, i.e. to the day's real first instant."""
    return datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of a local day in UTC: 23, 24 or 25 hours long."""
    return local_midnight(day, zone), local_midnight(day + timedelta(days=1), zone)


def local_today(now: datetime, zone: ZoneInfo) -> date:
    return now.astimezone(zone).date()
