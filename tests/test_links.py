"""Every link on the staff pages leads somewhere: a crawl as a staff user from /, the
dashboard, the queue, a message, a job and a run, over a database with something of every
kind in it; no 404, no 500, and no word said twice in a row ("succeeded: succeeded")."""

import re
from collections import deque
from datetime import timedelta
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from messaging.delivery.suppressions import SUPPRESSED_CODE, suppress_emails
from messaging.models import DeliveryAttempt, Outcome, ScheduledMessage, Status
from messaging.optouts import record_opt_out
from scheduling.models import Job, JobRun, RunStatus, Trigger
from scheduling.runner import run_job
from scheduling.services import sync_jobs
from tests.messaging.factories import email, make_client, make_lead, sms
from tests.users import JOB_OPERATOR, MESSAGE_OPERATOR, grant

pytestmark = pytest.mark.django_db

OUR_PAGES = ("/cron/", "/scheduled/")  # crawled through; any other link is only followed once
MAX_PAGES = 400
REPEATED_WORD = re.compile(r"\b([A-Za-z]{3,})\b[\s:.,;|]+\1\b", re.IGNORECASE)


class _Page(HTMLParser):
    """The hrefs of a page's links and the text a reader sees (no head, script or style)."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.text: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("head", "script", "style"):
            self._hidden += 1
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.links.append(href)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("head", "script", "style"):
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden and data.strip():
            self.text.append(data.strip())


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


@pytest.fixture
def everything(sample_jobs_registered):
    """Runs of every outcome (one failed with a 2,000-character error) and messages in every
    state, with attempts, a lead in quiet hours, an opt-out and a suppression."""
    sync_jobs()
    run_job("watchdog", Trigger.ADMIN)
    run_job("test-fail", Trigger.CRON)
    run_job("test-partial", Trigger.HTTP)
    job = Job.objects.get(name="test-ok")
    JobRun.objects.create(job=job, trigger=Trigger.CRON, status=RunStatus.FAILED, error="E" * 2000, duration_ms=5)
    JobRun.objects.create(job=job, trigger=Trigger.CRON, status=RunStatus.SKIPPED, skip_reason="disabled")
    now = timezone.now()
    client = make_client()
    lead = make_lead(client)
    sms(to=lead.phone, client=client, lead=lead)
    sms(send_at=now + timedelta(hours=2))
    for status in (Status.SENT, Status.DELIVERED, Status.CANCELLED, Status.UNDELIVERED):
        message = sms(to="+14155550177")
        ScheduledMessage.objects.filter(pk=message.pk).update(status=status)
        DeliveryAttempt.objects.create(message=message, outcome=Outcome.SENT, provider_message_id="SM1")
    failed = sms(to="+14155550188")
    ScheduledMessage.objects.filter(pk=failed.pk).update(status=Status.FAILED, last_error_code="opted_out")
    record_opt_out("+14155550188", None, source="inbound_stop")
    gone = email(to="gone@example.com")
    ScheduledMessage.objects.filter(pk=gone.pk).update(status=Status.FAILED, last_error_code=SUPPRESSED_CODE)
    suppress_emails(["gone@example.com"], "bounced")
    held = email(to="held@example.com")
    ScheduledMessage.objects.filter(pk=held.pk).update(last_error="held: invalid_api_key: check RESEND_API_KEY")
    DeliveryAttempt.objects.create(message=held, outcome=Outcome.ACCOUNT, error="x" * 2000)


@pytest.mark.parametrize("superuser", [False, True], ids=["staff", "superuser"])
def test_no_link_on_the_staff_pages_leads_to_a_404_or_500(client, everything, superuser):
    # A 403 is the permission system's answer (a staff user without the model permission), not a dead link.
    user = get_user_model().objects.create_user("operator", password="pw", is_staff=True, is_superuser=superuser)
    client.force_login(grant(user, *MESSAGE_OPERATOR, *JOB_OPERATOR))
    first_message = ScheduledMessage.objects.order_by("created_at").first()
    first_run = JobRun.objects.order_by("pk").first()
    start = ["/", "/cron/", "/scheduled/", f"/scheduled/{first_message.pk}/", "/cron/test-ok/"]
    start.append(f"/cron/{first_run.job.name}/runs/{first_run.pk}/")
    queue, seen, broken, repeated = deque(start), set(start), [], []
    crawled = 0
    while queue and crawled < MAX_PAGES:
        path = queue.popleft()
        response = client.get(path, follow=True)
        crawled += 1
        if response.status_code == 404 or response.status_code >= 500:
            broken.append((path, response.status_code))
            continue
        final = response.redirect_chain[-1][0] if response.redirect_chain else path
        if not urlsplit(final).path.startswith(OUR_PAGES):
            continue  # the admin and the like: reachable is enough, not crawled through
        page = _parse(response.content.decode())
        text = " | ".join(page.text)
        repeated += [(path, m.group(0)) for m in REPEATED_WORD.finditer(text)]
        for href in page.links:
            target = urljoin(final, href)
            parts = urlsplit(target)
            if parts.scheme or parts.netloc or target.startswith(("mailto:", "#")):
                continue
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            if target not in seen:
                seen.add(target)
                queue.append(target)
    print(f"crawled {crawled} pages, {len(seen)} distinct links")
    assert crawled > 20  # it did find the pages behind the links
    assert not broken, broken
    assert not repeated, repeated


def test_the_repeat_check_catches_what_it_is_for():
    assert REPEATED_WORD.search("watchdog: succeeded. succeeded: 1 of 1 items")
    assert REPEATED_WORD.search("failed | failed")
    assert not REPEATED_WORD.search("SMS to +14155550123 | 3 ok, 1 failed")
