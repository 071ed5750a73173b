import pytest

from scheduling import registry
from scheduling.models import Job
from scheduling.services import ensure_job, sync_jobs

pytestmark = pytest.mark.django_db


def test_job_change_page_has_no_delete_link(admin_client):
    job = ensure_job(registry.get("watchdog"))
    response = admin_client.get(f"/admin/scheduling/job/{job.pk}/change/")
    assert response.status_code == 200
    assert f"/admin/scheduling/job/{job.pk}/delete/" not in response.content.decode()


def test_job_changelist_offers_no_delete_action(admin_client):
    ensure_job(registry.get("watchdog"))
    response = admin_client.get("/admin/scheduling/job/")
    assert response.status_code == 200
    assert "delete_selected" not in response.content.decode()


def test_deleting_a_job_is_refused_and_keeps_the_row(admin_client):
    job = ensure_job(registry.get("watchdog"))
    response = admin_client.post(f"/admin/scheduling/job/{job.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert type(job).objects.filter(pk=job.pk).exists()


def test_bulk_delete_action_is_refused(admin_client):
    job = ensure_job(registry.get("watchdog"))
    response = admin_client.post(
        "/admin/scheduling/job/", {"action": "delete_selected", "_selected_action": [job.pk], "post": "yes"}
    )
    assert type(job).objects.filter(pk=job.pk).exists()
    assert response.status_code in (200, 302)


def test_job_change_page_shows_the_counters_health_is_judged_on(admin_client):
    sync_jobs()
    Job.objects.filter(name="watchdog").update(consecutive_partials=2, consecutive_overloads=4, jitter_seconds=15)
    job = Job.objects.get(name="watchdog")
    content = admin_client.get(f"/admin/scheduling/job/{job.pk}/change/").content.decode()
    assert "Consecutive partials" in content and "Consecutive overloads" in content
    assert 'name="jitter_seconds" value="15"' in content
