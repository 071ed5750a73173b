"""Who may see and run jobs: the dashboard and history need scheduling.view_job, "Run now"
(dashboard and admin action) needs scheduling.run_job, which change_job does not give."""

import pytest

from scheduling.models import Job, JobRun
from scheduling.services import sync_jobs
from tests.users import staff_user

pytestmark = pytest.mark.django_db

VIEW, CHANGE, RUN = "scheduling.view_job", "scheduling.change_job", "scheduling.run_job"


def admin_run_now(client, job: Job):
    return client.post("/admin/scheduling/job/", {"action": "run_now", "_selected_action": [job.pk]}, follow=True)


def test_view_only_staff_sees_the_dashboard_and_history_without_run_now(client):
    client.force_login(staff_user("viewer", VIEW))
    for path in ("/cron/", "/cron/watchdog/"):
        response = client.get(path)
        assert response.status_code == 200
        assert "watchdog" in response.content.decode() and "Run now" not in response.content.decode()


def test_view_only_staff_cannot_run_a_job(client):
    client.force_login(staff_user("viewer", VIEW))
    assert client.post("/cron/watchdog/run/").status_code == 403
    assert not JobRun.objects.exists()


def test_staff_without_view_job_gets_403_not_a_login_loop(client):
    client.force_login(staff_user("stranger"))
    assert client.get("/cron/").status_code == 403
    assert client.get("/cron/watchdog/").status_code == 403


def test_change_without_run_job_cannot_run_now_on_the_dashboard_or_in_admin(client):
    sync_jobs()
    client.force_login(staff_user("editor", VIEW, CHANGE))
    assert "Run now" not in client.get("/cron/").content.decode()
    assert client.post("/cron/watchdog/run/").status_code == 403
    changelist = client.get("/admin/scheduling/job/")
    assert changelist.status_code == 200 and 'value="run_now"' not in changelist.content.decode()
    admin_run_now(client, Job.objects.get(name="watchdog"))
    assert not JobRun.objects.exists()


def test_run_job_permission_runs_now_on_the_dashboard_and_in_admin(client):
    sync_jobs()
    client.force_login(staff_user("runner", VIEW, RUN))
    assert "Run now" in client.get("/cron/").content.decode()
    assert client.post("/cron/watchdog/run/").status_code == 302
    assert JobRun.objects.filter(job__name="watchdog", trigger="admin").count() == 1
    assert 'value="run_now"' in client.get("/admin/scheduling/job/").content.decode()
    admin_run_now(client, Job.objects.get(name="watchdog"))
    assert JobRun.objects.filter(job__name="watchdog", trigger="admin").count() == 2
