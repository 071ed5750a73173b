from django.urls import path

from scheduling import api

urlpatterns = [
    path("api/cron/", api.StatusView.as_view(), name="cron-status"),
    path("api/cron/<slug:job>/", api.TriggerView.as_view(), name="cron-trigger"),
    path("healthz", api.healthz, name="healthz"),
]
