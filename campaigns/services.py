"""Operations on campaigns: create, add recipients, pause, resume, cancel."""

import csv
import io
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.template import TemplateSyntaxError
from django.utils import timezone

from campaigns.models import (
    CAMPAIGN_TRANSITIONS,
    Campaign,
    CampaignRecipient,
    CampaignStatus,
    RecipientState,
    move_campaign,
    move_recipients,
)
from campaigns.templating import compile_template
from messaging.models import Channel, Client, Lead, ScheduledMessage, Status, transition
from messaging.services import normalize_recipient

logger = logging.getLogger("campaigns")

# Recipients per add request (API JSON or CSV); a bigger list goes in several requests.
MAX_RECIPIENTS_PER_ADD = 50_000
NAME_FIELDS = ("first_name", "last_name")


class CampaignConflict(Exception):
    """The campaign's state does not allow this."""


def template_errors(channel: str, body: str, subject: str) -> dict[str, str]:
    """{field: reason} for a body or subject that does not compile or is missing."""
    errors = {}
    for name, text in (("body", body), ("subject", subject)):
        if name == "body" and not (text or "").strip():
            errors["body"] = "The body is empty."
            continue
        try:
            compile_template(text or "")
        except TemplateSyntaxError as exc:
            errors[name] = f"The template does not compile: {exc}"
    if channel == Channel.EMAIL and not (subject or "").strip():
        errors["subject"] = "An email campaign needs a subject."
    return errors


def create_campaign(
    *,
    client: Client,
    name: str,
    channel: str,
    body: str,
    subject: str = "",
    max_in_flight: int = 10,
    per_minute: int | None = None,
    window: tuple[time, time] | None = None,
    start_at: datetime | None = None,
    source_key: str | None = None,
) -> Campaign:
    """A queued campaign; ValidationError naming each wrong field. `source_key`: the client
    schedule occurrence creating it (unique: a second one with the key is an IntegrityError)."""
    errors = template_errors(channel, body, subject)
    if channel not in Channel.values:
        errors["channel"] = f"Unknown channel {channel!r}: use 'sms' or 'email'."
    if errors:
        raise ValidationError(errors)
    campaign = Campaign.objects.create(
        client=client,
        name=name,
        channel=channel,
        body=body,
        subject=subject or "",
        max_in_flight=max_in_flight,
        per_minute=per_minute,
        window_start=window[0] if window else None,
        window_end=window[1] if window else None,
        start_at=start_at,
        source_key=source_key,
    )
    logger.info("campaign_created", extra={"campaign_id": campaign.pk, "client_id": client.pk})
    return campaign


@dataclass
class AddResult:
    added: int = 0
    duplicates: int = 0
    errors: list[dict[str, object]] = field(default_factory=list)  # {"line": n, "error": "..."}

    def as_dict(self) -> dict[str, object]:
        return {"added": self.added, "duplicates": self.duplicates, "errors": self.errors}


def _split_name(name: str) -> tuple[str, str]:
    first, _, last = (name or "").strip().partition(" ")
    return first[:100], last.strip()[:100]


def _insert(campaign: Campaign, rows: list[CampaignRecipient], result: AddResult) -> AddResult:
    """Insert the rows, a lead or an address once per campaign; counts what was new."""
    seen: set[str] = set()
    unique = []
    for row in rows:
        if row.to in seen:
            result.duplicates += 1
        else:
            seen.add(row.to)
            unique.append(row)
    with transaction.atomic():
        # The row lock orders concurrent adds (and a tick) on this campaign, so the counts are exact.
        campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if campaign.status == CampaignStatus.CANCELLED:
            raise CampaignConflict("The campaign is cancelled: recipients can no longer be added.")
        before = campaign.recipients.count()
        CampaignRecipient.objects.bulk_create(unique, ignore_conflicts=True, batch_size=2000)
        added = campaign.recipients.count() - before
        result.added += added
        result.duplicates += len(unique) - added
        if added and campaign.status == CampaignStatus.COMPLETED:
            move_campaign(campaign.pk, CampaignStatus.RUNNING, expect=[CampaignStatus.COMPLETED], completed_at=None)
    logger.info("campaign_recipients_added", extra={"campaign_id": campaign.pk, "added": result.added})
    return result


def _too_many(count: int) -> None:
    if count > MAX_RECIPIENTS_PER_ADD:
        raise ValidationError(f"At most {MAX_RECIPIENTS_PER_ADD:,} recipients per request; this one has {count:,}.")


def add_leads(campaign: Campaign, lead_ids: Iterable[object]) -> AddResult:
    """The client's leads by id, each with the address the campaign's channel needs."""
    lead_ids = list(lead_ids)
    _too_many(len(lead_ids))
    result = AddResult()
    wanted = [pk for pk in lead_ids if isinstance(pk, int) and not isinstance(pk, bool)]
    leads = Lead.objects.filter(client_id=campaign.client_id, pk__in=wanted).in_bulk()
    rows = []
    for line, pk in enumerate(lead_ids, start=1):
        lead = leads.get(pk) if pk in wanted else None
        if lead is None:
            result.errors.append({"line": line, "error": f"No lead {pk!r} of this campaign's client."})
            continue
        address = lead.phone if campaign.channel == Channel.SMS else lead.email
        try:
            to = normalize_recipient(campaign.channel, address)
        except ValidationError as exc:
            what = "phone number" if campaign.channel == Channel.SMS else "email address"
            result.errors.append({"line": line, "error": f"Lead {pk} has no valid {what}: {' '.join(exc.messages)}"})
            continue
        first, last = _split_name(lead.name)
        rows.append(CampaignRecipient(campaign=campaign, lead=lead, to=to, first_name=first, last_name=last))
    return _insert(campaign, rows, result)


def _contact_row(campaign: Campaign, contact: Mapping[str, object]) -> CampaignRecipient:
    """A recipient from a contact's fields; ValidationError saying what is wrong."""
    values = {str(k).strip(): ("" if v is None else str(v).strip()) for k, v in contact.items() if k is not None}
    address_field = "phone" if campaign.channel == Channel.SMS else "email"
    address = values.pop(address_field, "")
    if not address:
        raise ValidationError(f"No {address_field}: a {campaign.channel} campaign needs one.")
    to = normalize_recipient(campaign.channel, address)
    first = values.pop("first_name", "")[:100]
    last = values.pop("last_name", "")[:100]
    if not first and values.get("name"):
        first, last = _split_name(values.pop("name"))
    return CampaignRecipient(campaign=campaign, to=to, first_name=first, last_name=last, fields=values)


def add_contacts(campaign: Campaign, contacts: Iterable[object]) -> AddResult:
    """Contacts as {"phone"|"email", "first_name"?, ...}; bad ones reported by position."""
    contacts = list(contacts)
    _too_many(len(contacts))
    return _add_rows(campaign, enumerate(contacts, start=1))


def _add_rows(campaign: Campaign, numbered: Iterable[tuple[int, object]]) -> AddResult:
    result = AddResult()
    rows = []
    for line, contact in numbered:
        if not isinstance(contact, Mapping):
            result.errors.append({"line": line, "error": "A contact is an object with a phone or an email."})
            continue
        try:
            rows.append(_contact_row(campaign, contact))
        except ValidationError as exc:
            result.errors.append({"line": line, "error": " ".join(exc.messages)})
    return _insert(campaign, rows, result)


def add_csv(campaign: Campaign, text: str) -> AddResult:
    """CSV with a header row (phone or email, first_name, last_name, any other column): the good
    rows are added, each bad one reported by its line number in the file (the header is line 1)."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [name.strip() for name in (reader.fieldnames or [])]
    address_field = "phone" if campaign.channel == Channel.SMS else "email"
    if address_field not in header:
        raise ValidationError(f"The CSV needs a header row with a {address_field!r} column; it has {header or 'none'}.")
    reader.fieldnames = header
    numbered = []
    for row in reader:
        extra = row.pop(None, None)
        line = reader.line_num
        numbered.append((line, {"__extra__": True} if extra else row))
        _too_many(len(numbered))
    result = AddResult()
    good = []
    for line, row in numbered:
        if "__extra__" in row:
            result.errors.append({"line": line, "error": f"More columns than the header's {len(header)}."})
        else:
            good.append((line, row))
    added = _add_rows(campaign, good)
    added.errors = sorted(result.errors + added.errors, key=lambda error: error["line"])
    return added


# --- operator actions -------------------------------------------------------------------
def pause_campaign(campaign: Campaign) -> Campaign:
    return _move(campaign, CampaignStatus.PAUSED, "Only a queued or running campaign can be paused")


def resume_campaign(campaign: Campaign) -> Campaign:
    target = CampaignStatus.RUNNING if campaign.started_at else CampaignStatus.QUEUED
    return _move(campaign, target, "Only a paused campaign can be resumed", expect=[CampaignStatus.PAUSED])


def cancel_campaign(campaign: Campaign, now: datetime | None = None) -> Campaign:
    """Stop launching; the messages it queued that are still pending are cancelled, its pending
    recipients skipped."""
    now = now or timezone.now()
    with transaction.atomic():
        campaign = _move(campaign, CampaignStatus.CANCELLED, "A completed or cancelled campaign cannot be cancelled")
        launched = CampaignRecipient.objects.filter(campaign=campaign, state=RecipientState.LAUNCHED)
        pending_messages = ScheduledMessage.objects.filter(
            pk__in=launched.values("message_id"), status=Status.PENDING
        ).values_list("pk", flat=True)
        transition(list(pending_messages), Status.CANCELLED, expect=[Status.PENDING], last_error="campaign cancelled")
        move_recipients(
            RecipientState.SKIPPED,
            where=Q(campaign=campaign, message__status=Status.CANCELLED),
            expect=[RecipientState.LAUNCHED],
            now=now,
            reason="campaign cancelled",
        )
        move_recipients(
            RecipientState.SKIPPED,
            ids=campaign.recipients.filter(state=RecipientState.PENDING).values_list("pk", flat=True),
            expect=[RecipientState.PENDING],
            now=now,
            reason="campaign cancelled",
        )
    return campaign


def _move(campaign: Campaign, target: str, refusal: str, expect: list[str] | None = None) -> Campaign:
    expect = expect or [s for s, targets in CAMPAIGN_TRANSITIONS.items() if target in targets]
    if not move_campaign(campaign.pk, target, expect=expect):
        campaign.refresh_from_db()
        raise CampaignConflict(f"{refusal}; this one is {campaign.status}.")
    campaign.refresh_from_db()
    logger.info("campaign_moved", extra={"campaign_id": campaign.pk, "status": target})
    return campaign
