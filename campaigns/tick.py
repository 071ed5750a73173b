"""The campaigns tick: every active campaign visited, each launching what its caps leave room for.

    sync launched recipients with their messages (done / failed / skipped), set-based
    for each batch of active campaigns, least recently visited first:
        one short transaction: lock the batch's campaign rows (FOR UPDATE, in id order),
        count in flight and launched in the last 60 s, take up to `room` pending recipients
        each, queue their messages, mark them launched, commit

Room is claimed under the campaign's row lock, so two ticks at once (two hosts, cron and an
HTTP trigger) see each other's launches and never exceed a cap together. The number of
queries grows with the number of batches, not of campaigns. A batch that fails in the
database is retried one campaign per transaction, so one campaign's error is its own.
"""

import json
import logging
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, connections, transaction
from django.db.models import Count, F, Q, TextField, Value
from django.db.models.functions import Concat
from django.template import Template
from django.utils import timezone

from campaigns.launching import Launch, launch_messages, recipient_key
from campaigns.models import (
    ACTIVE,
    CAMPAIGN_TRANSITIONS,
    Campaign,
    CampaignRecipient,
    CampaignStatus,
    PendingRecipient,
    RecipientState,
    allowed_sources,
    launch_recipients,
    move_campaign,
    move_recipients,
)
from campaigns.templating import compile_template, render_for
from messaging.delivery.suppressions import suppressed_emails
from messaging.models import Channel, Status
from messaging.optouts import opt_outs_for
from messaging.quiet_hours import next_allowed_time
from notifications.models import Event
from notifications.services import notify
from scheduling import dbname

logger = logging.getLogger("campaigns.tick")

# Launches count against per_minute for this long. A second less than a minute: launches are
# stamped with the time they happen, and ticks come once a minute, each launching a little
# after its start; counting a full 60 s would catch the previous tick's launches made a few
# milliseconds later in its run, and halve the rate.
PER_MINUTE_SPAN = timedelta(seconds=59)
IN_FLIGHT = (Status.PENDING, Status.SENDING)


@dataclass
class TickResult:
    visited: int = 0
    launched: int = 0
    skipped: int = 0
    failed: int = 0  # recipients
    completed: int = 0
    outside_window: int = 0
    deferred: int = 0  # campaigns left for the next tick (deadline)
    synced: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (campaign id, what went wrong)

    def merge(self, other: "TickResult") -> None:
        for name in ("visited", "launched", "skipped", "failed", "completed", "outside_window"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.extend(other.errors)


def window_open(campaign: Campaign, now: datetime) -> bool:
    """Inside the campaign's send window, in the client's zone (no window: always)."""
    if not campaign.has_window:
        return True
    return next_allowed_time(now, campaign.client.timezone, campaign.window_start, campaign.window_end) is None


def sync_recipients(now: datetime) -> int:
    """Launched recipients follow their messages: done when sent or delivered, failed with the
    error when it failed, skipped when it was cancelled. Set-based, four UPDATEs."""
    launched = [RecipientState.LAUNCHED]
    message_error = Concat(
        Value("message "), F("message__status"), Value(": "), F("message__last_error"), output_field=TextField()
    )
    moved = move_recipients(
        RecipientState.DONE, where=Q(message__status__in=[Status.SENT, Status.DELIVERED]), expect=launched, now=now
    )
    # The UPDATE cannot read a joined column: the reason is copied by a second, narrow UPDATE.
    failed = list(
        CampaignRecipient.objects.filter(
            state=RecipientState.LAUNCHED, message__status__in=[Status.FAILED, Status.UNDELIVERED]
        ).values_list("pk", message_error)
    )
    for reason, ids in _group_by_reason(failed).items():
        moved += move_recipients(RecipientState.FAILED, ids=ids, expect=launched, now=now, reason=reason)
    moved += move_recipients(
        RecipientState.SKIPPED,
        where=Q(message__status=Status.CANCELLED),
        expect=launched,
        now=now,
        reason="its message was cancelled",
    )
    moved += move_recipients(
        RecipientState.FAILED, where=Q(message__isnull=True), expect=launched, now=now, reason="its message was deleted"
    )
    return moved


def _group_by_reason(pairs: list[tuple[int, str]]) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = defaultdict(list)
    for pk, reason in pairs:
        grouped[reason.rstrip(": ")].append(pk)
    return grouped


def campaigns_to_visit(now: datetime) -> list[int]:
    """Active, started campaigns; the least recently visited first (never visited: first of all)."""
    return list(
        Campaign.objects.filter(status__in=ACTIVE)
        .filter(Q(start_at__isnull=True) | Q(start_at__lte=now))
        .order_by(F("last_ticked_at").asc(nulls_first=True), "id")
        .values_list("pk", flat=True)
    )


def process_campaigns(
    now: datetime | None = None,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    batch_size: int | None = None,
    threads: int | None = None,
) -> TickResult:
    """One tick: launch within every campaign's caps and window; mark finished campaigns.

    Batches go to `threads` (CAMPAIGNS_TICK_THREADS) threads, each with its own database
    connection: a batch spends about half its time waiting on PostgreSQL (the INSERT of its
    messages, the UPDATE of its recipients), which another batch's rendering and validation
    fill. Batches lock disjoint campaigns, so they never wait for each other. One thread when
    the caller holds a transaction (the others could not see its rows) and on SQLite.

    Without `now` (the job), each batch takes the database's clock once it holds its campaigns'
    locks: launched_at and the per-minute window are then on one clock for every host, so two
    hosts whose clocks disagree cannot launch more than per_minute between them. A given `now`
    (tests, the demo) is the tick's start, and each batch is that plus the whole seconds since."""
    batch_size = batch_size or settings.CAMPAIGNS_TICK_BATCH_SIZE
    result = TickResult()
    tick_start = now or database_now()  # the same clock as the batches' (finished_at, start_at)
    result.synced = sync_recipients(tick_start)
    ids = campaigns_to_visit(tick_start)
    batches = deque(ids[start : start + batch_size] for start in range(0, len(ids), batch_size))
    started = time.monotonic()
    lock = threading.Lock()

    def visit_batches() -> None:
        while True:
            with lock:
                if not batches or should_stop():
                    return
                batch = batches.popleft()
            # Each batch judges the per-minute cap, the window and launched_at on the clock as it
            # is now, not as it was when the tick began (a tick may take minutes).
            # (Whole seconds: a tick quicker than that stays on `now`, so a frozen clock is exact.)
            batch_now = None if now is None else now + timedelta(seconds=int(time.monotonic() - started))
            visited = _visit(batch, batch_now)
            with lock:
                result.merge(visited)

    count = min(threads or settings.CAMPAIGNS_TICK_THREADS, len(batches))
    if count <= 1 or connection.vendor != "postgresql" or connection.in_atomic_block:
        visit_batches()
    else:
        failures: list[BaseException] = []
        name = dbname.current()  # pg_stat_activity shows the threads' connections as the job's
        workers = [
            threading.Thread(target=_with_own_connection, args=(visit_batches, failures, name)) for _ in range(count)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        if failures:  # a bug, not a campaign's error (_visit() keeps those): the run fails with it
            raise failures[0]
    result.deferred = sum(len(batch) for batch in batches)
    return result


def _with_own_connection(work: Callable[[], None], failures: list[BaseException], name: str | None) -> None:
    try:
        with dbname.named(name):
            work()
    except BaseException as exc:
        failures.append(exc)  # raised by the tick once every thread has stopped
    finally:
        connections.close_all()  # this thread's own


def _visit(batch: list[int], batch_now: datetime | None) -> "TickResult":
    """One batch in its transaction; when that fails in the database, one campaign per
    transaction, so that the campaign that broke it carries the error alone."""
    try:
        return _tick_batch(batch, batch_now)
    except Exception:
        logger.exception("campaign_batch_failed", extra={"campaigns": len(batch)})
    result = TickResult()
    for campaign_id in batch:
        try:
            result.merge(_tick_batch([campaign_id], batch_now))
        except Exception as exc:
            logger.exception("campaign_failed", extra={"campaign_id": campaign_id})
            # Visited, and failed: counted in `visited` as a campaign whose plan failed is, so
            # that the job's `visited - len(errors)` succeeded is never short (or negative).
            result.visited += 1
            result.errors.append((campaign_id, f"{type(exc).__name__}: {exc}"))
    return result


@dataclass
class _Counts:
    in_flight: int = 0
    launched: int = 0  # recipients still `launched` (in flight or not synced yet)
    recent: int = 0  # launched in the last 60 s


def _room(campaign: Campaign, counts: _Counts) -> int:
    room = campaign.max_in_flight - counts.in_flight
    if campaign.per_minute:
        room = min(room, campaign.per_minute - counts.recent)
    return max(room, 0)


def _counts(campaign_ids: list[int], now: datetime) -> dict[int, _Counts]:
    """In flight, still launched, and launched in the last 60 s, per campaign: one query that
    the partial `recipient_launched` and the (campaign, launched_at) indexes serve."""
    cutoff = now - PER_MINUTE_SPAN
    launched = Q(state=RecipientState.LAUNCHED)
    rows = (
        CampaignRecipient.objects.filter(campaign_id__in=campaign_ids)
        .filter(launched | Q(launched_at__gt=cutoff))
        .values("campaign_id")
        .annotate(
            in_flight=Count("pk", filter=launched & Q(message__status__in=IN_FLIGHT)),
            launched=Count("pk", filter=launched),
            recent=Count("pk", filter=Q(launched_at__gt=cutoff)),
        )
        .order_by()
    )
    return {row["campaign_id"]: _Counts(row["in_flight"], row["launched"], row["recent"]) for row in rows}


PENDING_COLUMNS = ("id", "campaign_id", "lead_id", "to", "first_name", "last_name", "fields")


def _pending(takes: dict[int, int]) -> dict[int, list[PendingRecipient]]:
    """Up to `take` pending recipients of each campaign, in id order: on PostgreSQL one LATERAL
    query over the partial `recipient_pending` index; elsewhere (SQLite, the demo) one each."""
    pending: dict[int, list[PendingRecipient]] = defaultdict(list)
    if connection.vendor != "postgresql":
        for campaign_id, take in takes.items():
            rows = CampaignRecipient.objects.filter(campaign_id=campaign_id, state=RecipientState.PENDING)
            rows = rows.order_by("pk").values_list(*PENDING_COLUMNS)[:take]
            pending[campaign_id] = [PendingRecipient(*row) for row in rows]
        return pending
    table = CampaignRecipient._meta.db_table
    columns = ", ".join(f'r."{column}"' for column in PENDING_COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(
            # The inner LIMIT is a constant (the largest take) so the planner knows it is small
            # and walks the partial index in id order; with `LIMIT c.take` it guessed 100 rows
            # and sorted each campaign's every recipient instead (20x slower at 1,000 each).
            f"""SELECT {columns} FROM unnest(%s::bigint[], %s::int[]) AS c(id, take)
                CROSS JOIN LATERAL (
                    SELECT x.*, row_number() OVER (ORDER BY x.id) AS n FROM (
                        SELECT * FROM {table} WHERE campaign_id = c.id AND state = 'pending' ORDER BY id LIMIT %s
                    ) x
                ) r
                WHERE r.n <= c.take""",
            [list(takes), list(takes.values()), max(takes.values())],
        )
        # Django reads jsonb as text and decodes it in JSONField.from_db_value; so does this.
        for pk, campaign_id, lead_id, to, first, last, fields in cursor.fetchall():
            decoded = json.loads(fields) if isinstance(fields, str) else fields
            pending[campaign_id].append(PendingRecipient(pk, campaign_id, lead_id, to, first, last, decoded))
    return pending


@dataclass
class _Plan:
    launches: list[Launch] = field(default_factory=list)
    skipped: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    failed: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[int, str] = field(default_factory=dict)  # campaign id -> why it launched nothing


def database_now() -> datetime:
    """The database's clock (clock_timestamp(): now, not the transaction's start); the host's
    on SQLite, where every process is on one host."""
    if connection.vendor != "postgresql":
        return timezone.now()
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]


def _tick_batch(batch: list[int], now: datetime | None) -> TickResult:
    result = TickResult()
    with transaction.atomic():
        campaigns = list(
            Campaign.objects.select_for_update(of=("self",))
            .select_related("client")
            .filter(pk__in=batch, status__in=ACTIVE)
            .order_by("pk")
        )
        if not campaigns:
            return result
        # Read once the locks are held: a tick that waited on another's batch counts its launches.
        now = now or database_now()
        ids = [c.pk for c in campaigns]
        counts = _counts(ids, now)
        rooms: dict[int, int] = {}
        for campaign in campaigns:
            is_open = window_open(campaign, now) and (campaign.start_at is None or campaign.start_at <= now)
            result.outside_window += not is_open
            rooms[campaign.pk] = _room(campaign, counts.get(campaign.pk, _Counts())) if is_open else 0
        # One more than the room, so that whether anything is left pending is known; a campaign
        # with no room and something in flight cannot launch or complete: nothing to read.
        takes = {pk: room + 1 for pk, room in rooms.items() if room or not counts.get(pk, _Counts()).launched}
        pending = _pending(takes) if takes else {}
        plan = _plan(campaigns, rooms, pending, now)
        queued = launch_messages(plan.launches, now)
        for recipient_id, reason in queued.errors.items():
            plan.failed[reason].append(recipient_id)
        launched = queued.messages
        result.launched = launch_recipients(launched, now)
        for reason, recipient_ids in plan.skipped.items():
            result.skipped += move_recipients(
                RecipientState.SKIPPED, ids=recipient_ids, expect=[RecipientState.PENDING], now=now, reason=reason
            )
        for reason, recipient_ids in plan.failed.items():
            result.failed += move_recipients(
                RecipientState.FAILED, ids=recipient_ids, expect=[RecipientState.PENDING], now=now, reason=reason
            )
        _record_visit(campaigns, counts, pending, launched, plan, now, result)
    return result


def _complete(campaign_ids: list[int], now: datetime) -> list[int]:
    """Move the finished campaigns to completed and tell who asked (once: only the tick whose
    UPDATE changed the row notifies, also with two ticks at once); their ids."""
    if not campaign_ids:
        return []
    table = Campaign._meta.db_table
    marks = ", ".join(["%s"] * len(campaign_ids))
    sources = sorted(allowed_sources(CAMPAIGN_TRANSITIONS, CampaignStatus.COMPLETED, ACTIVE))
    states = ", ".join(["%s"] * len(sources))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET status = %s, completed_at = %s, updated_at = %s"
            f" WHERE id IN ({marks}) AND status IN ({states}) RETURNING id, name",
            [CampaignStatus.COMPLETED, now, now, *campaign_ids, *sources],
        )
        completed = cursor.fetchall()
    for campaign_id, name in completed:
        # After the tick's transaction commits: a rollback must not leave a "completed" told.
        transaction.on_commit(
            lambda campaign_id=campaign_id, name=name: notify(
                Event.CAMPAIGN_COMPLETED,
                f"[campaign] {name} completed",
                f"Campaign {campaign_id} has nothing left to launch or in flight.",
                link="/campaigns/",
                perm="campaigns.view_campaign",
            )
        )
    return [campaign_id for campaign_id, _ in completed]


def _record_visit(
    campaigns: list[Campaign],
    counts: dict[int, _Counts],
    pending: dict[int, list[PendingRecipient]],
    launched: dict[int, uuid.UUID],
    plan: "_Plan",
    now: datetime,
    result: TickResult,
) -> None:
    """Visited, queued -> running for those that launched, completed for those with nothing left
    pending or in flight, and each campaign's last_error."""
    ids = [c.pk for c in campaigns]
    Campaign.objects.filter(pk__in=ids).update(last_ticked_at=now)
    launched_in = {c.pk for c in campaigns if any(r.pk in launched for r in pending.get(c.pk, ()))}
    move_campaign(launched_in, CampaignStatus.RUNNING, expect=[CampaignStatus.QUEUED], started_at=now)
    settled = _settled(plan)
    finished = [
        c.pk
        for c in campaigns
        if c.pk not in plan.errors
        and not counts.get(c.pk, _Counts()).launched
        and all(r.pk in settled for r in pending.get(c.pk, ()))
        and c.pk not in launched_in
    ]
    result.completed = len(_complete(finished, now))
    for campaign_id, error in plan.errors.items():  # rare: one UPDATE each
        result.errors.append((campaign_id, error))
        Campaign.objects.filter(pk=campaign_id).update(last_error=error)
    Campaign.objects.filter(pk__in=ids).exclude(pk__in=list(plan.errors)).exclude(last_error="").update(last_error="")
    result.visited = len(campaigns)


def _settled(plan: _Plan) -> set[int]:
    """Recipients this visit skipped or failed (they leave nothing pending)."""
    return {pk for group in (plan.skipped, plan.failed) for ids in group.values() for pk in ids}


def _plan(
    campaigns: list[Campaign], rooms: dict[int, int], pending: dict[int, list[PendingRecipient]], now: datetime
) -> _Plan:
    """What each campaign launches, skips and fails; Python only, one campaign's error its own."""
    plan = _Plan()
    candidates = [r for c in campaigns for r in pending.get(c.pk, [])[: rooms[c.pk]]]
    blocked_phones = opt_outs_for(r.to for r in candidates if "@" not in r.to)
    suppressed = suppressed_emails([r.to for r in candidates if "@" in r.to])
    for campaign in campaigns:
        chosen = pending.get(campaign.pk, [])[: rooms[campaign.pk]]
        if not chosen:
            continue
        try:
            templates = _templates(campaign)
        except Exception as exc:
            plan.errors[campaign.pk] = f"the template does not compile: {exc}"
            continue
        for recipient in chosen:
            if campaign.channel == Channel.SMS and blocked_phones.blocks(recipient.to, campaign.client_id):
                plan.skipped["opted out"].append(recipient.pk)
            elif campaign.channel == Channel.EMAIL and recipient.to in suppressed:
                plan.skipped["suppressed (bounced or complained)"].append(recipient.pk)
            else:
                launch_or_fail(plan, campaign, recipient, templates, now)
    return plan


def _templates(campaign: Campaign) -> tuple[Template, Template | None]:
    subject = compile_template(campaign.subject) if campaign.channel == Channel.EMAIL else None
    return compile_template(campaign.body), subject


def launch_or_fail(
    plan: _Plan,
    campaign: Campaign,
    recipient: PendingRecipient,
    templates: tuple[Template, Template | None],
    now: datetime,
) -> None:
    """Render the recipient's message and plan its launch, or plan its failure with the reason.
    What the queue refuses (too long, a bad address) comes back from launch_messages()."""
    body_template, subject_template = templates
    try:
        body = render_for(body_template, recipient)
        subject = render_for(subject_template, recipient) if subject_template else ""
    except Exception as exc:
        plan.failed[f"the template failed: {type(exc).__name__}: {exc}"].append(recipient.pk)
        return
    plan.launches.append(
        Launch(
            key=recipient_key(campaign.pk, recipient.pk),
            recipient_id=recipient.pk,
            channel=campaign.channel,
            to=recipient.to,
            body=body,
            subject=subject,
            client_id=campaign.client_id,
            lead_id=recipient.lead_id,
            send_at=now,
        )
    )
