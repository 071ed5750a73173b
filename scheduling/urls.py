from django.urls import path

from scheduling import api, jobs_api

urlpatterns = [
    path("api/cron/", api.StatusView.as_view(), name="cron-status"),
    # Before the trigger's <slug:job>: "jobs" and "runs" are reserved job names.
    path("api/cron/jobs/", jobs_api.JobListView.as_view(), name="cron-jobs"),
    path("api/cron/jobs/<slug:name>/", jobs_api.JobDetailView.as_view(), name="cron-job"),
    path("api/cron/jobs/<slug:name>/stats/", jobs_api.JobStatsView.as_view(), name="cron-job-stats"),
    path("api/cron/runs/", jobs_api.RunListView.as_view(), name="cron-runs"),
    path("api/cron/<slug:job>/", api.TriggerView.as_view(), name="cron-trigger"),
    path("healthz", api.healthz, name="healthz"),
]
