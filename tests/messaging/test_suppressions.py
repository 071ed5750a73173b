"""The email suppression list: the look-up claiming uses, the message page, the admin."""

import pytest

from messaging.delivery.suppressions import suppress_emails, suppressed_emails
from messaging.models import EmailSuppression, PendingReport, ScheduledMessage, Status
from tests.messaging.factories import email
from tests.users import MESSAGE_OPERATOR, staff_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    client.force_login(staff_user("operator", *MESSAGE_OPERATOR))
    return client


def failed_as_suppressed(to: str = "lead@example.com") -> ScheduledMessage:
    """As claiming leaves an email to a suppressed address."""
    message = email(to=to)
    ScheduledMessage.objects.filter(pk=message.pk).update(
        status=Status.FAILED, last_error_code="suppressed", last_error="the address is on the suppression list"
    )
    message.refresh_from_db()
    return message


def test_suppressed_emails_answers_for_a_batch_in_one_query(django_assert_num_queries):
    suppress_emails(["bounced@example.com", "spam@example.com"], "bounced")

    with django_assert_num_queries(1):
        found = suppressed_emails(["Bounced@Example.com", "fine@example.com", "spam@example.com"])

    assert found == {"Bounced@Example.com", "spam@example.com"}  # as the caller spelled them


def test_suppressed_emails_of_nothing_asks_nothing(django_assert_num_queries):
    with django_assert_num_queries(0):
        assert suppressed_emails([]) == set()


def test_message_page_says_the_address_is_suppressed_and_where_to_remove_it(staff):
    suppression = EmailSuppression.objects.create(email="lead@example.com", reason="bounced")
    message = failed_as_suppressed()

    response = staff.get(f"/scheduled/{message.pk}/")

    html = response.content.decode()
    assert "is on the email suppression list" in html
    assert "(bounced on " in html
    assert f"/admin/messaging/emailsuppression/{suppression.pk}/delete/" in html


def test_message_page_says_when_the_suppression_was_removed_since(staff):
    message = failed_as_suppressed()

    html = staff.get(f"/scheduled/{message.pk}/").content.decode()

    assert "It has been removed since; Retry sends it." in html


def test_message_page_of_another_failure_says_nothing_of_suppression(staff):
    EmailSuppression.objects.create(email="lead@example.com", reason="bounced")
    message = email()
    ScheduledMessage.objects.filter(pk=message.pk).update(status=Status.FAILED, last_error_code="validation_error")

    html = staff.get(f"/scheduled/{message.pk}/").content.decode()

    assert 'id="suppression"' not in html


def test_operator_removes_a_suppression_in_the_admin(admin_client):
    suppression = EmailSuppression.objects.create(email="lead@example.com", reason="complained")

    response = admin_client.post(f"/admin/messaging/emailsuppression/{suppression.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert suppressed_emails(["lead@example.com"]) == set()


def test_operator_suppresses_an_address_by_hand_in_any_spelling(admin_client):
    response = admin_client.post(
        "/admin/messaging/emailsuppression/add/", {"email": " Lead@Example.com", "reason": "manual", "detail": ""}
    )

    assert response.status_code == 302
    assert list(EmailSuppression.objects.values_list("email", "reason")) == [("lead@example.com", "manual")]


def test_admin_suppression_list_is_searchable(admin_client):
    EmailSuppression.objects.create(email="lead@example.com", reason="bounced")
    EmailSuppression.objects.create(email="other@example.com", reason="bounced")

    response = admin_client.get("/admin/messaging/emailsuppression/", {"q": "lead@"})

    assert [s.email for s in response.context["cl"].result_list] == ["lead@example.com"]


def test_admin_lists_kept_reports_read_only(admin_client):
    PendingReport.objects.create(channel="sms", provider_message_id="SM1", target="delivered", event="twilio:delivered")

    listing = admin_client.get("/admin/messaging/pendingreport/")
    report = PendingReport.objects.get()

    assert listing.status_code == 200 and b"SM1" in listing.content
    assert admin_client.get("/admin/messaging/pendingreport/add/").status_code == 403
    assert admin_client.post(f"/admin/messaging/pendingreport/{report.pk}/delete/", {"post": "yes"}).status_code == 403
