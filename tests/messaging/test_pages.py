"""The /scheduled/ pages and the messaging admin, through the Django test client."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from messaging.models import Conversation, DeliveryAttempt, Message, Outcome, ScheduledMessage, Status
from tests.messaging.factories import email, make_client, make_lead, sms
from tests.users import MESSAGE_OPERATOR, staff_user

pytestmark = pytest.mark.django_db

DAY = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def staff(client):
    client.force_login(staff_user("operator", *MESSAGE_OPERATOR))
    return client


def in_state(message: ScheduledMessage, status: str, **fields: object) -> ScheduledMessage:
    ScheduledMessage.objects.filter(pk=message.pk).update(status=status, **fields)
    message.refresh_from_db()
    return message


def listed(response) -> list[ScheduledMessage]:
    return list(response.context["page"].object_list)


# --- access -----------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/scheduled/", "/scheduled/00000000-0000-0000-0000-000000000000/"])
def test_anonymous_visitor_is_sent_to_admin_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=")


def test_logged_in_non_staff_user_is_sent_to_admin_login(client):
    client.force_login(get_user_model().objects.create_user("customer", password="pw"))
    response = client.get("/scheduled/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


# --- list: counts and filters -------------------------------------------------------------
def test_counts_per_status_count_every_status_and_all(staff):
    for _ in range(3):
        sms()
    for _ in range(2):
        in_state(sms(), Status.SENT)
    in_state(sms(), Status.FAILED)
    counts = staff.get("/scheduled/").context["counts"]
    assert counts["all"] == 6
    assert (counts["pending"], counts["sent"], counts["failed"], counts["cancelled"]) == (3, 2, 1, 0)


def test_counts_follow_other_filters_but_not_status_so_every_tab_shows_its_size(staff):
    sms()
    in_state(sms(), Status.SENT)
    email()
    counts = staff.get("/scheduled/?status=pending&channel=sms").context["counts"]
    assert (counts["all"], counts["pending"], counts["sent"]) == (2, 1, 1)


def test_status_filter_shows_only_that_status(staff):
    pending = sms()
    in_state(sms(), Status.SENT)
    assert listed(staff.get("/scheduled/?status=pending")) == [pending]


def test_channel_filter_shows_only_that_channel(staff):
    sms()
    mail = email()
    assert listed(staff.get("/scheduled/?channel=email")) == [mail]


def test_client_filter_shows_only_that_clients_messages(staff):
    acme, other = make_client("Acme"), make_client("Other")
    mine = sms(client=acme)
    sms(client=other)
    assert listed(staff.get(f"/scheduled/?client={acme.pk}")) == [mine]


def test_date_range_filter_includes_both_end_days_whole(staff):
    sms(send_at=DAY - timedelta(days=1, hours=1))  # 9 March, 11:00
    first = sms(send_at=DAY.replace(hour=0, minute=0))  # 10 March, 00:00
    last = sms(send_at=DAY + timedelta(days=1, hours=11, minutes=59))  # 11 March, 23:59
    sms(send_at=DAY + timedelta(days=2))  # 12 March
    response = staff.get("/scheduled/?date_from=2026-03-10&date_to=2026-03-11")
    assert listed(response) == [last, first]


def test_recipient_search_finds_a_number_however_it_is_written(staff):
    wanted = sms(to="+14155550123")
    sms(to="+14155550199")
    assert listed(staff.get("/scheduled/", {"q": "(415) 555-0123"})) == [wanted]


def test_recipient_search_finds_part_of_an_address(staff):
    wanted = email(to="maria.lopez@example.com")
    email(to="someone@example.org")
    assert listed(staff.get("/scheduled/", {"q": "lopez"})) == [wanted]


def test_invalid_filter_value_is_reported_and_ignored(staff):
    message = sms()
    response = staff.get("/scheduled/?status=bogus&date_from=yesterday")
    assert listed(response) == [message]
    assert "date_from" in response.context["form"].errors
    assert b"(ignored)" in response.content


# --- pagination -------------------------------------------------------------------------
def test_list_shows_fifty_rows_a_page_newest_first(staff):
    for minute in range(55):
        sms(send_at=DAY + timedelta(minutes=minute))
    page = staff.get("/scheduled/").context["page"]
    assert len(page.object_list) == 50 and page.paginator.num_pages == 2
    assert page.object_list[0].send_at == DAY + timedelta(minutes=54)


def test_page_links_keep_the_filters(staff):
    for minute in range(52):
        sms(send_at=DAY + timedelta(minutes=minute))
    content = staff.get("/scheduled/?status=pending&channel=sms").content.decode()
    assert 'href="?status=pending&amp;channel=sms&amp;page=2"' in content


def test_second_page_applies_the_filters(staff):
    for minute in range(51):
        sms(send_at=DAY + timedelta(minutes=minute))
    in_state(sms(send_at=DAY - timedelta(days=1)), Status.SENT)
    rows = listed(staff.get("/scheduled/?status=pending&page=2"))
    assert [m.send_at for m in rows] == [DAY]


def test_list_query_count_does_not_grow_with_rows(staff, django_assert_num_queries):
    client_ = make_client()
    for _ in range(2):
        sms(client=client_)
    staff.get("/scheduled/")  # the session's first request may differ
    with CaptureQueriesContext(connection) as few:
        staff.get("/scheduled/")
    for _ in range(30):
        in_state(sms(client=make_client("Another")), Status.FAILED)
    with django_assert_num_queries(len(few.captured_queries)):
        response = staff.get("/scheduled/")
    assert len(listed(response)) == 32


# --- actions ----------------------------------------------------------------------------
def test_buttons_are_shown_only_where_the_state_allows(staff):
    pending, sent, failed = sms(), in_state(sms(), Status.SENT), in_state(sms(), Status.FAILED)
    content = staff.get("/scheduled/").content.decode()
    assert f"/scheduled/{pending.pk}/cancel/" in content and f"/scheduled/{pending.pk}/retry/" not in content
    assert f"/scheduled/{failed.pk}/retry/" in content and f"/scheduled/{failed.pk}/cancel/" not in content
    assert f"/scheduled/{sent.pk}/cancel/" not in content and f"/scheduled/{sent.pk}/retry/" not in content


def test_cancel_cancels_a_pending_message_and_says_so(staff):
    message = sms()
    response = staff.post(f"/scheduled/{message.pk}/cancel/", {"next": "/scheduled/"}, follow=True)
    message.refresh_from_db()
    assert message.status == Status.CANCELLED
    short_id = str(message.pk)[:8]
    assert [str(m) for m in response.context["messages"]] == [f"Cancelled SMS to +14155550123 (id {short_id})."]


def test_cancel_of_a_sent_message_is_refused_with_the_reason(staff):
    message = in_state(sms(), Status.SENT)
    response = staff.post(f"/scheduled/{message.pk}/cancel/", follow=True)
    message.refresh_from_db()
    assert message.status == Status.SENT
    assert [str(m) for m in response.context["messages"]] == [
        f"SMS to +14155550123 (id {str(message.pk)[:8]}) can no longer be cancelled: it is sent."
    ]


def test_retry_queues_a_failed_message_again_with_fresh_attempts(staff):
    message = in_state(sms(), Status.FAILED, attempts=5, last_error_code="30003")
    response = staff.post(f"/scheduled/{message.pk}/retry/", follow=True)
    message.refresh_from_db()
    assert (message.status, message.attempts) == (Status.PENDING, 0)
    assert str(list(response.context["messages"])[0]) == (
        f"Queued SMS to +14155550123 (id {str(message.pk)[:8]}) again: it goes out on the next delivery run."
    )


def test_retry_of_a_pending_message_is_refused_with_the_reason(staff):
    message = sms()
    response = staff.post(f"/scheduled/{message.pk}/retry/", follow=True)
    message.refresh_from_db()
    assert message.status == Status.PENDING
    assert [str(m) for m in response.context["messages"]] == [
        f"SMS to +14155550123 (id {str(message.pk)[:8]}) cannot be retried: it is pending."
    ]


def test_action_returns_to_the_filtered_list_it_came_from(staff):
    message = sms()
    response = staff.post(f"/scheduled/{message.pk}/cancel/", {"next": "/scheduled/?status=pending&page=1"})
    assert response["Location"] == "/scheduled/?status=pending&page=1"


def test_action_never_redirects_off_site(staff):
    message = sms()
    response = staff.post(f"/scheduled/{message.pk}/cancel/", {"next": "https://evil.example/"})
    assert response["Location"] == f"/scheduled/{message.pk}/"


@pytest.mark.parametrize("action", ["cancel", "retry"])
def test_get_on_an_action_endpoint_is_405_and_changes_nothing(staff, action):
    message = sms()
    assert staff.get(f"/scheduled/{message.pk}/{action}/").status_code == 405
    message.refresh_from_db()
    assert message.status == Status.PENDING


def test_action_without_csrf_token_is_refused(client):
    client.handler.enforce_csrf_checks = True
    client.force_login(staff_user("op", *MESSAGE_OPERATOR))  # may cancel: only the token is missing
    message = sms()
    assert client.post(f"/scheduled/{message.pk}/cancel/").status_code == 403
    message.refresh_from_db()
    assert message.status == Status.PENDING


# --- detail -----------------------------------------------------------------------------
def test_detail_lists_every_attempt_with_its_outcome_and_error(staff):
    message = in_state(sms(), Status.PENDING, attempts=2, last_error_code="http_503")
    DeliveryAttempt.objects.create(
        message=message, outcome=Outcome.TRANSIENT, http_status=503, error_code="http_503", error="Service busy"
    )
    DeliveryAttempt.objects.create(message=message, outcome=Outcome.TRANSIENT, error_code="timeout", error="timed out")
    response = staff.get(f"/scheduled/{message.pk}/")
    content = response.content.decode()
    assert len(response.context["attempts"]) == 2
    assert "Service busy" in content and "timed out" in content and "503" in content
    assert "Delivery attempts (2)" in content


def test_detail_shows_lease_and_provider_id(staff):
    lease = DAY + timedelta(minutes=5)
    message = in_state(
        sms(), Status.SENDING, claimed_by="web-1:4242", lease_expires_at=lease, provider_message_id="SM123abc"
    )
    content = staff.get(f"/scheduled/{message.pk}/").content.decode()
    assert "web-1:4242" in content and "SM123abc" in content and "2026-03-10 12:05:00" in content


def test_detail_escapes_markup_in_the_body_and_errors(staff):
    message = in_state(sms(body="<script>alert('body')</script>"), Status.FAILED, last_error="<b>bad</b>")
    content = staff.get(f"/scheduled/{message.pk}/").content.decode()
    assert "<script>alert(" not in content and "&lt;script&gt;alert(" in content
    assert "<b>bad</b>" not in content and "&lt;b&gt;bad&lt;/b&gt;" in content


def test_detail_query_count_does_not_grow_with_attempts(staff, django_assert_num_queries):
    message = sms(client=make_client())
    DeliveryAttempt.objects.create(message=message, outcome=Outcome.TRANSIENT)
    staff.get(f"/scheduled/{message.pk}/")
    with CaptureQueriesContext(connection) as few:
        staff.get(f"/scheduled/{message.pk}/")
    DeliveryAttempt.objects.bulk_create([DeliveryAttempt(message=message, outcome=Outcome.TRANSIENT)] * 10)
    with django_assert_num_queries(len(few.captured_queries)):
        staff.get(f"/scheduled/{message.pk}/")


def test_unknown_message_is_404(staff):
    assert staff.get("/scheduled/00000000-0000-0000-0000-000000000000/").status_code == 404


# --- admin ------------------------------------------------------------------------------
def _admin_action(admin_client, action: str, messages: list[ScheduledMessage]):
    return admin_client.post(
        "/admin/messaging/scheduledmessage/",
        {"action": action, "_selected_action": [str(m.pk) for m in messages]},
        follow=True,
    )


def test_admin_cancel_action_cancels_what_it_can_and_reports_how_many(admin_client):
    pending, other_pending, sent = sms(), sms(), in_state(sms(), Status.SENT)
    response = _admin_action(admin_client, "cancel_selected", [pending, other_pending, sent])
    statuses = set(ScheduledMessage.objects.filter(pk__in=[pending.pk, other_pending.pk]).values_list("status"))
    assert statuses == {(Status.CANCELLED,)}
    assert ScheduledMessage.objects.get(pk=sent.pk).status == Status.SENT
    assert "2 messages cancelled." in [str(m) for m in response.context["messages"]]


def test_admin_retry_action_reports_when_nothing_could_be_retried(admin_client):
    pending = sms()
    response = _admin_action(admin_client, "retry_selected", [pending])
    assert ScheduledMessage.objects.get(pk=pending.pk).status == Status.PENDING
    assert "No message queued again" in str(list(response.context["messages"])[0])


def test_admin_search_finds_a_message_by_number_or_idempotency_key(admin_client):
    by_number = sms(to="+14155550123")
    by_key = sms(to="+14155550124", idempotency_key="missed-call:77")
    sms(to="+14155550125")
    found = admin_client.get("/admin/messaging/scheduledmessage/", {"q": "415-555-0123"}).context["cl"].result_list
    assert list(found) == [by_number]
    found = admin_client.get("/admin/messaging/scheduledmessage/", {"q": "missed-call:77"}).context["cl"].result_list
    assert list(found) == [by_key]


def test_admin_message_page_shows_its_attempts_read_only(admin_client):
    message = sms()
    DeliveryAttempt.objects.create(message=message, outcome=Outcome.PERMANENT, error="number is invalid")
    response = admin_client.get(f"/admin/messaging/scheduledmessage/{message.pk}/change/")
    assert response.status_code == 200
    assert b"number is invalid" in response.content


def test_admin_conversation_page_inlines_only_the_newest_messages(admin_client):
    conversation = Conversation.objects.create(client=make_client(), phone="+14155550123")
    Message.objects.bulk_create(
        [
            Message(
                conversation=conversation, direction="in", body=f"msg-{i:03d}", created_at=DAY + timedelta(minutes=i)
            )
            for i in range(60)
        ]
    )
    content = admin_client.get(f"/admin/messaging/conversation/{conversation.pk}/change/").content.decode()
    assert "msg-059" in content and "msg-010" in content
    assert "msg-009" not in content


@pytest.mark.parametrize(
    "path", ["client", "lead", "optout", "call", "message", "deliveryattempt", "conversation", "scheduledmessage"]
)
def test_admin_changelists_render(admin_client, path):
    assert admin_client.get(f"/admin/messaging/{path}/", {"q": "x"}).status_code == 200


# --- why it waits -------------------------------------------------------------------------
def test_detail_says_in_one_sentence_why_a_message_waits(staff):
    message = in_state(
        sms(send_at=DAY - timedelta(minutes=5)),
        Status.PENDING,
        attempts=1,
        last_error_code="http_503",
        last_error="Service busy",
        next_attempt_at=DAY + timedelta(minutes=4),
    )
    with time_machine.travel(DAY, tick=False):
        content = staff.get(f"/scheduled/{message.pk}/").content.decode()
    assert (
        '<p id="waiting" class="waiting backoff">Backing off after error http_503: the next attempt is at '
        "2026-03-10 12:04 UTC (attempt 2 of 5).</p>"
    ) in content


def test_detail_of_a_message_in_quiet_hours_names_the_opening_in_the_recipients_zone(staff):
    client_ = make_client(tz="America/New_York")
    lead = make_lead(client_, tz="America/Los_Angeles")
    message = sms(to=lead.phone, client=client_, lead=lead, send_at=DAY - timedelta(hours=8))
    with time_machine.travel(DAY.replace(hour=7), tick=False):  # 00:00 in Los Angeles (PDT)
        content = staff.get(f"/scheduled/{message.pk}/").content.decode()
    assert "it goes out from 08:00 in America/Los_Angeles (2026-03-10 15:00 UTC)." in content


def test_next_attempt_is_shown_only_for_a_pending_message(staff):
    pending = sms()
    sent = in_state(sms(), Status.SENT)
    assert "Next attempt at" in staff.get(f"/scheduled/{pending.pk}/").content.decode()
    assert "Next attempt at" not in staff.get(f"/scheduled/{sent.pk}/").content.decode()


def test_list_shows_the_short_reason_under_the_status(staff):
    later = sms(send_at=DAY + timedelta(hours=2))
    held = in_state(
        sms(send_at=DAY - timedelta(hours=1)),
        Status.PENDING,
        last_error="held: bad credentials: check TWILIO_AUTH_TOKEN",
    )
    with time_machine.travel(DAY, tick=False):
        content = staff.get("/scheduled/").content.decode()
    assert (
        '<div class="small muted waiting scheduled" title="Scheduled for later: it goes out at 2026-03-10 14:00 UTC.">'
        in content
    )
    assert "scheduled for 14:00 UTC</div>" in content
    assert f'data-id="{held.pk}"' in content and "held: provider misconfigured</div>" in content
    assert f'data-id="{later.pk}"' in content


def test_list_query_count_does_not_grow_with_waiting_sms_to_leads(staff, django_assert_num_queries):
    client_ = make_client()
    sms(to="+14155550111", client=client_, lead=make_lead(client_))
    email()
    staff.get("/scheduled/")
    with CaptureQueriesContext(connection) as few:
        staff.get("/scheduled/")
    for i in range(20):
        other = make_client(f"Client {i}")
        sms(to=f"+1415555{i:04d}", client=other, lead=make_lead(other, phone=f"+1415555{i:04d}"))
        email(to=f"lead{i}@example.com")
    with django_assert_num_queries(len(few.captured_queries)):
        staff.get("/scheduled/")


# --- cancel asks first ----------------------------------------------------------------------
def test_cancel_on_the_list_is_a_link_to_a_confirmation_not_a_post(staff):
    message = sms()
    content = staff.get("/scheduled/?status=pending").content.decode()
    assert f'href="/scheduled/{message.pk}/cancel/confirm/?next=/scheduled/%3Fstatus%3Dpending"' in content
    assert f'action="/scheduled/{message.pk}/cancel/"' not in content
    message.refresh_from_db()
    assert message.status == Status.PENDING


def test_confirmation_names_the_message_and_posts_the_cancel_with_next(staff):
    message = sms(body="Your appointment is tomorrow at 9", client=make_client("Acme Plumbing"))
    response = staff.get(f"/scheduled/{message.pk}/cancel/confirm/", {"next": "/scheduled/?status=pending"})
    content = response.content.decode()
    assert response.status_code == 200
    assert f"This cancels <strong>SMS to +14155550123 (id {str(message.pk)[:8]})</strong> for Acme Plumbing" in content
    assert "Your appointment is tomorrow at 9" in content
    assert f'<form class="inline" method="post" action="/scheduled/{message.pk}/cancel/">' in content
    assert '<input type="hidden" name="next" value="/scheduled/?status=pending">' in content
    assert 'href="/scheduled/?status=pending" id="keep">No, keep it</a>' in content
    message.refresh_from_db()
    assert message.status == Status.PENDING  # asking changes nothing


def test_confirmation_drops_an_off_site_next(staff):
    message = sms()
    content = staff.get(f"/scheduled/{message.pk}/cancel/confirm/", {"next": "https://evil.example/"}).content.decode()
    assert "evil.example" not in content
    assert f'href="/scheduled/{message.pk}/" id="keep"' in content


def test_confirmation_for_a_message_that_can_no_longer_be_cancelled_says_why(staff):
    message = in_state(sms(), Status.SENT)
    content = staff.get(f"/scheduled/{message.pk}/cancel/confirm/").content.decode()
    assert "can no longer be cancelled: it is sent." in content
    assert "confirm-cancel" not in content


def test_confirmation_of_an_unknown_message_is_404(staff):
    assert staff.get("/scheduled/00000000-0000-0000-0000-000000000000/cancel/confirm/").status_code == 404


# --- words ---------------------------------------------------------------------------------
def test_channels_read_sms_and_email_never_sms_capitalised(staff):
    message, mail = sms(), email()
    pages = [
        staff.get(path).content.decode()
        for path in ("/scheduled/", f"/scheduled/{message.pk}/", f"/scheduled/{mail.pk}/")
    ]
    for content in pages:
        assert "Sms" not in content and "EMAIL" not in content
    assert '<option value="sms">SMS</option>' in pages[0] and '<option value="email">Email</option>' in pages[0]
    assert '<td data-label="Channel">SMS</td>' in pages[0] and '<td data-label="Channel">Email</td>' in pages[0]
    assert "<h1>SMS to" in pages[1] and "<h1>Email to" in pages[2]


# --- long errors ---------------------------------------------------------------------------
LONG_ERROR = "Twilio said: " + "x" * 1000 + " " + "y" * 987  # 2,000 characters, long unbroken words


def test_list_truncates_a_long_error_and_the_message_page_shows_it_whole(staff):
    message = in_state(sms(), Status.FAILED, last_error_code="30003", last_error=LONG_ERROR)
    listing = staff.get("/scheduled/").content.decode()
    assert LONG_ERROR not in listing and "Twilio said: xxxx" in listing
    detail = staff.get(f"/scheduled/{message.pk}/").content.decode()
    assert f'<span class="error-text" id="last-error">{LONG_ERROR}</span>' in detail


def test_attempts_table_truncates_a_long_error_with_the_whole_text_one_click_away(staff):
    message = sms()
    DeliveryAttempt.objects.create(message=message, outcome=Outcome.PERMANENT, error_code="30003", error=LONG_ERROR)
    content = staff.get(f"/scheduled/{message.pk}/").content.decode()
    assert f"<details><summary>{LONG_ERROR[:119]}…</summary><pre>{LONG_ERROR}</pre></details>" in content


# --- site -----------------------------------------------------------------------------------
def test_root_leads_to_the_dashboard(staff):
    response = staff.get("/")
    assert response.status_code == 302 and response["Location"] == "/cron/"
    assert staff.get("/", follow=True).redirect_chain[-1] == ("/cron/", 302)


def test_favicon_is_served_and_linked_from_every_page(client, staff):
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response["Content-Type"] == "image/svg+xml"
    assert b"<svg" in response.content
    assert '<link rel="icon" href="/favicon.ico" type="image/svg+xml">' in staff.get("/scheduled/").content.decode()
